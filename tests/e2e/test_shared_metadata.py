"""Two machines' scheduled jobs sharing one ML-Metadata store on a real MariaDB server (Debian's mariadb-server, the
`mariadb` fixture) and one serving folder.

Two `flywheel retrain` processes, each with its own output folder, start at once on the same spans with
`--metadata mysql://...` (the password in the environment): both train, one pushes first and the other's push is
decided against what serves then. Each job's answer is read from its own run in the shared store, the served
version's lineage reads from MariaDB as it does from SQLite, the next scheduled pass decides from the shared
serving folder, and the password shows nowhere: not in output, logs (one job runs --verbose), files or the store.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from flywheel.api.pipeline import simulate
from flywheel.metadata import artifacts, connection, lineage, run_record
from flywheel.store import layout
from tests.conftest import FLYWHEEL, REPO, call_cli

JOBS = ("job_a", "job_b")
STEPS = "30"
NODES = ["ImportSchemaGen", "Ingest", "StatisticsGen", "ExampleValidator", "DataGate", "Transform", "Trainer",
         "Evaluate", "Push"]


def _retrain(work, url: str, job: str, *extra: str) -> list[str]:
    return [FLYWHEEL, "retrain", "taxi", "--data", str(work / "data"), "--output-dir", str(work / job),
            "--serving-dir", str(work / "serving"), "--metadata", url, "--window", "2", "--train-steps", STEPS,
            "--json", *extra]


@pytest.fixture(scope="module")
def shared(tmp_path_factory, mariadb) -> dict:
    work = tmp_path_factory.mktemp("shared_metadata")
    simulate("taxi", str(work / "data"), spans=2, rows=2000, seed=3)
    url = mariadb.database("flywheel_shared")
    env = {**os.environ, **mariadb.env}
    jobs = {job: subprocess.Popen(_retrain(work, url, job, *(["--verbose"] if job == "job_a" else [])), cwd=REPO,
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for job in JOBS}
    outputs = {job: p.communicate(timeout=600) for job, p in jobs.items()}
    return {"work": work, "url": url, "env": env, "password": mariadb.password,
            "codes": {job: p.returncode for job, p in jobs.items()},
            "out": {job: out for job, (out, _) in outputs.items()},
            "err": {job: err for job, (_, err) in outputs.items()}}


@pytest.fixture
def store(shared, monkeypatch):
    monkeypatch.setenv(connection.PASSWORD_ENV, shared["password"])
    return connection.open_store(shared["url"])


def _result(shared, job: str) -> dict:
    assert shared["codes"][job] == 0, shared["err"][job][-3000:]
    return json.loads(shared["out"][job])


def test_both_jobs_train_and_push_through_one_serving_folder(shared):
    a, b = (_result(shared, job) for job in JOBS)
    for found in (a, b):
        assert found["status"] == "finished" and found["retrained"] is True and found["blessed"] is True, found
        assert found["drift_detected"] is None and found["previous_version"] is None, "both started with no model"
    served = layout.versions(str(shared["work"] / "serving"), "taxi")
    pushed = sorted(r["pushed_version"] for r in (a, b) if r["pushed"])
    assert pushed and pushed == served, "every version in serving was pushed by one of the jobs, none lost"


def test_each_job_reads_its_own_run_from_the_shared_store(shared, store):
    runs = run_record.pipeline_runs(store, "taxi")
    assert len(runs) == 2
    for job in JOBS:
        root = str(shared["work"] / job / "pipeline")
        [mine] = run_record.pipeline_runs(store, "taxi", root)
        records = run_record.latest_run(shared["url"], "taxi", root)
        assert sorted(records) == sorted(NODES) and {r.state for r in records.values()} == {"COMPLETE"}
        assert records["Trainer"].output("model")["uri"].startswith(root + os.sep), "its own model, not the other's"
        push = records["Push"].output("pushed_model")
        assert bool(push[artifacts.PUSHED]) == _result(shared, job)["pushed"], "the job's answer is its own run's"
        if not push[artifacts.PUSHED]:  # it evaluated against no model; by its push, the other job's served
            assert push[artifacts.PUSH_REASON], push
        assert mine.name.endswith("@" + run_record.root_tag(root))


def test_lineage_reads_mariadb_as_it_reads_sqlite(shared, capfd, monkeypatch, taxi_runs):
    monkeypatch.setenv(connection.PASSWORD_ENV, shared["password"])
    serving = str(shared["work"] / "serving")
    result = call_cli(capfd, "lineage", "--metadata", shared["url"], "--serving-dir", serving, "--json",
                      output_dir=str(shared["work"] / "job_a"))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    from_sqlite = lineage.describe(os.path.join(taxi_runs, "metadata.sqlite"), os.path.join(taxi_runs, "serving"),
                                   "taxi", None)

    def shape(described):
        return [(s["node"], s["state"], sorted(o["key"] for o in s["outputs"])) for s in described["steps"]]

    assert shape(found) == shape(from_sqlite) and [s[0] for s in shape(found)] == NODES
    pusher = next(job for job in JOBS if _result(shared, job)["pushed_version"] == found["version"])
    trainer = next(s for s in found["steps"] if s["node"] == "Trainer")
    assert trainer["outputs"][0]["uri"].startswith(str(shared["work"] / pusher)), "the job that pushed it trained it"
    assert found["spans"] == [1, 2] and found["rollouts"] == []


def test_the_next_scheduled_pass_decides_from_the_shared_serving_folder(shared):
    """Either machine's next pass finds the served model trained on exactly these spans: nothing to do."""
    done = subprocess.run(_retrain(shared["work"], shared["url"], "job_b", "--if-drift"), cwd=REPO,
                          env=shared["env"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["status"] == "nothing_new" and found["retrained"] is False, found


def test_the_password_shows_nowhere(shared, store):
    secret = shared["password"]
    for job in JOBS:
        assert secret not in shared["out"][job] + shared["err"][job]
    assert "Using connection config" in shared["err"]["job_a"] and 'password: "***"' in shared["err"]["job_a"], (
        "job_a ran --verbose: TFX logged its connection config, the password hidden")
    for folder, _, files in os.walk(shared["work"]):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                assert secret.encode() not in f.read(), os.path.join(folder, name)
    recorded = [store.get_artifacts(), store.get_executions(), store.get_contexts()]
    assert len(recorded[1]) >= 2 * len(NODES) and secret not in str(recorded)
