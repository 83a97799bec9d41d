"""The compiled Kubeflow spec run the way KFP v2 runs it (tests/kfp_harness.py) over recurring nights: the CURRENT
spec, compiled into a temporary folder by `compile_pipeline`, each task's own container command as a separate
process. `python -m tests.e2e.test_kfp_nights` prints the nights' table."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest

from flywheel.pipelines.taxi import kubeflow_runner as kr
from tests import kfp_harness as h
from tests.conftest import REPO
from tests.test_kfp_harness import compile_for_test

TRAIN_ARGS = json.dumps({"num_steps": 20})
ROWS = 300


# Beam's DirectRunner in the spec starts a worker process per core, each importing TensorFlow: on two shared cores
# that costs more than these few hundred rows. The processes run in_memory; the cache keys keep the spec's flags.
IN_MEMORY = {"--direct_running_mode=multi_processing": "--direct_running_mode=in_memory",
             "--direct_num_workers=0": "--direct_num_workers=1"}


@dataclasses.dataclass
class Site:
    """A KFP installation for the taxi spec: the spec, the cluster (volumes, pipeline root, cache), the runs."""

    root: str
    data: str
    serving: str
    cluster: h.Cluster
    nights: dict[str, h.RunResult]

    def versions(self) -> list[str]:
        return sorted(v for v in os.listdir(os.path.join(self.serving, "taxi")) if v.isdigit())




def make_site(root: str, seed_model: str, log=None) -> Site:
    """Night 1 is over: `seed_model` (a version pushed by a local run of the same pipeline) is in serving as
    version 1. Spans 1 and 2 (drifted) wait on the data volume for night 2."""
    import flywheel
    from tests.server.conftest import add_version

    spec_path = compile_for_test(root)
    data, serving = os.path.join(root, "data-volume"), os.path.join(root, "serving-volume")
    flywheel.simulate("taxi", os.path.join(data, "taxi"), spans=2, drift_from=2, rows=ROWS, seed=1)
    add_version(serving, seed_model, 1)
    cluster = h.Cluster(spec_path, os.path.join(root, "pipeline-root"),
                        volumes={kr.DATA_MOUNT: data, kr.SERVING_MOUNT: serving}, image_root=(kr.IMAGE_ROOT, REPO),
                        log=log, replace_args=IN_MEMORY)
    return Site(root, data, serving, cluster, {})


def night(site: Site, number: int) -> h.RunResult:
    """Night N with the spec's defaults for data-root and serving-dir (the volumes) and a few train steps."""
    result = site.cluster.run({kr.TRAIN_ARGS: TRAIN_ARGS}, run_id=f"night-{number}")
    site.nights[f"night {number}"] = result
    return result


def recurring_nights(root: str, seed_model: str, log=None) -> str:
    """Nights 2 (new spans, the newest drifted) and 3 (nothing new) of the compiled spec; their table."""
    site = make_site(root, seed_model, log)
    for number in (2, 3):
        night(site, number)
    return h.night_table(site.nights)


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> Site:
    from tests import tiny_runs

    out = tiny_runs.two_runs(str(tmp_path_factory.mktemp("tiny")))  # the session's tiny runs, shared
    seed = max(os.listdir(os.path.join(out, "serving", "taxi")), key=lambda v: int(v) if v.isdigit() else -1)
    site = make_site(str(tmp_path_factory.mktemp("kfp")), os.path.join(out, "serving", "taxi", seed),
                     log=lambda line: print(line, file=sys.stderr))
    night(site, 2)
    night(site, 3)
    print("\n" + h.night_table(site.nights), file=sys.stderr)
    return site


def _decision(result: h.RunResult) -> dict:
    return result.tasks["Decide"].artifacts["decision"]["metadata"]


TRAINING = {"Transform", "Trainer", "Evaluate", "Push"}
DATA_STAGES = {"ImportSchemaGen", "Ingest", "StatisticsGen", "ExampleValidator", "DataGate"}


def test_night_2_new_drifted_data_runs_every_task_and_pushes_a_second_version(nights):
    second = nights.nights["night 2"]
    assert set(second.names(h.RAN)) == set(nights.cluster.spec.pipeline.root.dag.tasks)
    assert _decision(second)["verdict"] == "retrain" and _decision(second)["drift_detected"] == 1.0
    assert second.tasks["Decide"].parameters["span"] == 2 and second.tasks["Decide"].parameters["serving_version"] == 1
    assert second.tasks["Evaluate"].inputs["serving_version"] == second.tasks["Push"].inputs["serving_version"] == 1
    versions = nights.versions()
    assert len(versions) == 2 and versions[0] == "1"
    model = os.path.join(nights.serving, "taxi", versions[1])
    assert os.path.isfile(os.path.join(model, "saved_model.pb"))
    with open(os.path.join(model, "push.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert str(manifest["version"]) == versions[1] and manifest["spans"] == [1, 2]
    assert manifest["blessing"]["baseline_version"] == 1  # evaluated against the model then in serving
    pushed = second.tasks["Push"].artifacts["pushed_model"]
    assert pushed["uri"] == os.path.join(nights.cluster.pipeline_root, "taxi", "night-2", "Push", "pushed_model")


def test_night_2_read_the_data_volume_the_image_root_and_the_decided_span(nights):
    second = nights.nights["night 2"]
    examples = second.tasks["Ingest"].artifacts["examples"]
    assert examples["name"] == "night-2/Ingest/examples" and examples["metadata"]["span"] == 2.0
    assert second.tasks["Ingest"].inputs["span"] == 2
    assert second.tasks["Ingest"].inputs["expected_fingerprint"] == second.tasks["Decide"].parameters["fingerprint"]
    with open(os.path.join(second.tasks["ImportSchemaGen"].artifacts["schema"]["uri"], "schema.pbtxt")) as f:
        with open(os.path.join(REPO, "schemas", "taxi", "schema.pbtxt")) as g:
            assert f.read() == g.read()
    assert second.tasks["DataGate"].artifacts["verdict"]["metadata"]["passed"] == 1.0
    assert os.path.isfile(second.tasks["Decide"].artifacts["report_html"]["uri"])


def test_night_3_with_nothing_new_decides_takes_the_data_stages_from_the_cache_and_trains_nothing(nights):
    third = nights.nights["night 3"]
    assert third.names(h.RAN) == ["Decide"]
    assert _decision(third)["verdict"] == "nothing_new" and _decision(third)["retrain"] == 0.0
    assert set(third.names(h.CACHED)) == DATA_STAGES
    assert set(third.names(h.SKIPPED)) == TRAINING
    assert third.tasks["Transform"].reason.startswith("condition false: (inputs.artifacts['_Decide.decision']")
    assert len(nights.versions()) == 2


def test_the_night_table_shows_each_tasks_state(nights):
    table = h.night_table(nights.nights, seconds=False).splitlines()
    assert table[0] == "| task | night 2 | night 3 |"
    assert "| Decide | ran | ran |" in table
    assert "| Ingest | ran | cached |" in table
    assert "| Trainer | ran | skipped |" in table


if __name__ == "__main__":
    import tempfile

    from tests import tiny_runs

    with tempfile.TemporaryDirectory() as folder:
        out = tiny_runs.two_runs(os.path.join(folder, "tiny"))
        seed = max((v for v in os.listdir(os.path.join(out, "serving", "taxi")) if v.isdigit()), key=int)
        print(recurring_nights(os.path.join(folder, "kfp"), os.path.join(out, "serving", "taxi", seed),
                               log=lambda line: print(line, file=sys.stderr)))
