"""End-to-end runs of the taxi pipeline (real TFX, real data, SQLite MLMD); assertions read real outputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess

import tensorflow as tf

from flywheel.metadata import run_record
from flywheel.store import layout, publish
from tests import tiny_runs
from tests.conftest import FLYWHEEL, REPO, TRAIN_STEPS, call_cli, run_cli, shipped_data

EXPECTED_NODES = {"ImportSchemaGen", "Ingest", "StatisticsGen", "ExampleValidator", "DataGate", "Transform",
                  "Trainer", "Evaluate", "Push"}


def _serialized_examples(n: int = 5) -> list[bytes]:
    with open(shipped_data(), newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    out = []
    for row in rows:
        feature = {}
        for k, v in row.items():
            if v == "" or k == "tips":
                continue
            if k in ("payment_type", "company"):
                feature[k] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode()]))
            elif k in ("fare", "trip_miles") or "itude" in k:
                feature[k] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v)]))
            else:
                feature[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(float(v))]))
        out.append(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return out


def test_local_run_prints_progress_and_summary(local_run):
    for node in EXPECTED_NODES:
        assert f"▶ {node} ..." in local_run.stdout and f"✓ {node} " in local_run.stdout
    assert "run finished" in local_run.stdout and "serving:" in local_run.stdout
    assert "WARNING" not in local_run.stdout and "INFO:absl" not in local_run.stderr


def test_pushed_model_loads_predicts_and_has_complete_manifest(local_run):
    served = layout.latest(os.path.join(local_run.output_dir, "serving"), "taxi")
    assert served is not None
    m = served.manifest
    for key in ("version", "model_uri", "model_sha256", "data_fingerprint", "spans", "metrics", "blessing",
                "pushed_at", "signature_check"):
        assert key in m, key
    assert m["version"] == served.version and m["spans"] == [0] and m["blessing"]["blessed"] is True
    assert m["metrics"]["auc"] >= 0.75 and m["metrics"]["example_count"] > 4000
    loaded = tf.saved_model.load(served.path)
    out = loaded.signatures["serving_examples"](examples=tf.constant(_serialized_examples()))
    values = next(iter(out.values())).numpy().reshape(-1)
    assert len(values) == 5 and ((values >= 0) & (values <= 1)).all()
    left = sorted(os.listdir(os.path.dirname(served.path)))
    assert left == [publish.LOCK_FILE, str(served.version)], "no temp folder left, only the push lock's file"


def test_mlmd_holds_every_execution_and_lineage(local_run):
    records = run_record.latest_run(os.path.join(local_run.output_dir, "metadata.sqlite"), "taxi")
    assert set(records) == EXPECTED_NODES
    assert all(r.state == "COMPLETE" for r in records.values()), {n: r.state for n, r in records.items()}
    examples = records["Ingest"].output("examples")
    assert examples["rows_read"] == 15002 and examples["rows_quarantined"] == 0
    assert json.loads(examples["rows_written"]) == {"train": examples["rows_written_train"],
                                                   "eval": examples["rows_written_eval"]}
    assert records["DataGate"].output("verdict")["passed"] == 1
    assert os.path.exists(records["DataGate"].output("verdict")["report"])
    evaluation = records["Evaluate"].output("evaluation")
    html = open(evaluation["report"]).read()
    assert "AUC by trip_start_hour" in html and "AUC by payment_type" in html and "<script" not in html
    assert records["Push"].output("pushed_model")["pushed"] == 1
    tb = os.path.join(os.path.dirname(os.path.dirname(records["Trainer"].output("model_run")["uri"])))
    assert any("events.out.tfevents" in f for _, _, fs in os.walk(tb) for f in fs)


def test_unchanged_rerun_says_so_without_importing_tensorflow(local_run, tmp_path):
    poison = tmp_path / "poison" / "tensorflow"
    poison.mkdir(parents=True)
    (poison / "__init__.py").write_text("raise ImportError('tensorflow imported on the unchanged-rerun path')\n")
    again = run_cli("run", "taxi", "--train-steps", TRAIN_STEPS, output_dir=local_run.output_dir,
                    env={"PYTHONPATH": str(poison.parent)})
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stdout + again.stderr
    assert len(layout.versions(os.path.join(local_run.output_dir, "serving"), "taxi")) == 1


def test_a_rerun_with_a_changed_gate_and_the_model_removed_from_serving(local_run, tmp_path, capfd):
    """The shared run with the gate's allow-list changed and the pushed version removed from serving, run again in
    its own folder (the schema pinned under the output directory keeps its path, the cache its keys); the run as
    it was is copied aside first and put back after, for the tests that read it. What is upstream of the gate
    comes from the cache; the gate runs again, and so does what it guards; Push publishes into the emptied
    folder. (That an emptied folder alone changes Push's cache key: tests/pipelines/taxi/test_pipeline.py.)"""
    out = local_run.output_dir
    kept = str(tmp_path / "kept")
    shutil.copytree(out, kept, symlinks=True)
    try:
        _rerun_with_a_changed_gate_and_the_model_removed(out, capfd)
    finally:
        shutil.rmtree(out)
        shutil.move(kept, out)


def _rerun_with_a_changed_gate_and_the_model_removed(out: str, capfd) -> None:
    shutil.rmtree(os.path.join(out, "serving", "taxi"))
    again = call_cli(capfd, "run", "taxi", "--train-steps", TRAIN_STEPS, "--allow-anomaly", "company:*",
                     output_dir=out)
    assert again.returncode == 0, again.stdout + again.stderr
    done = {line.split()[1]: line for line in again.stdout.splitlines() if line.strip().startswith("✓")}
    for node in ("ImportSchemaGen", "Ingest", "StatisticsGen", "ExampleValidator"):
        assert "(cached)" in done[node], done[node]
    assert "(cached)" not in done["DataGate"], "the gate's parameter changed: it must run again"
    assert "(cached)" not in done["Push"], "the version is gone from serving: push again"
    records = run_record.latest_run(os.path.join(out, "metadata.sqlite"), "taxi")
    assert records["Ingest"].state == "CACHED" and records["DataGate"].state == "COMPLETE"
    after = layout.latest(os.path.join(out, "serving"), "taxi")
    assert after is not None and after.manifest["model_uri"] == records["Trainer"].output("model")["uri"]
    assert records["Push"].output("pushed_model")["pushed_version"] == str(after.version)


def test_anomalous_data_stops_at_the_gate_and_leaves_its_report(tmp_path, capfd):
    with open(shipped_data(), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = [r for _, r in zip(range(3000), reader, strict=False)]
    hour, pay, fare = header.index("trip_start_hour"), header.index("payment_type"), header.index("fare")
    for i, row in enumerate(rows):
        if i % 5 == 0:
            row[hour], row[pay] = "31", "Bitcoin"
    for row in rows[1:4]:
        row[fare] = "N/A"  # quarantined by Ingest: the run names where, the gate's report counts them
    data = tmp_path / "anomalous.csv"
    with open(data, "w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    result = call_cli(capfd, "run", "taxi", "--data", str(data), "--train-steps", "10",
                      output_dir=str(tmp_path / "out"))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "data validation gate stopped the run" in result.stderr
    report = result.stderr.split("see ")[-1].strip()
    html = open(report).read()
    assert "FAILED" in html and "trip_start_hour" in html and "payment_type" in html
    [told] = [line for line in result.stdout.splitlines() if line.startswith("  data: ")]
    quarantine = told.split("3 quarantined (")[1].rstrip(")")
    assert os.sep + os.path.join("Ingest", "quarantine") + os.sep in quarantine, told
    with open(quarantine) as f:
        assert sorted(json.loads(line)["line"] for line in f) == [3, 4, 5]
    assert f"Ingest quarantined 3 of 3,000 rows read (0.10%); they are not in the statistics or the anomalies " \
           f"below. Each is in {quarantine} with its file, line and reason." in html
    verdict = json.load(open(os.path.join(os.path.dirname(report), "verdict.json")))
    types = {(f["feature"], f["type"]) for f in verdict["findings"]}
    assert ("payment_type", "ENUM_TYPE_UNEXPECTED_STRING_VALUES") in types
    records = run_record.latest_run(str(tmp_path / "out" / "metadata.sqlite"), "taxi")
    assert "Trainer" not in records or records["Trainer"].output("model") is None
    assert not os.path.exists(tmp_path / "out" / "serving" / "taxi")


def _node_states(metadata_path: str) -> list[dict[str, str]]:
    """Each run of the taxi pipeline in the store, oldest first: node -> its execution's state (COMPLETE, ...)."""
    from ml_metadata.proto import metadata_store_pb2

    store = run_record.open_store(metadata_path)
    name = metadata_store_pb2.Execution.State.Name
    return [{run_record.node_id(store, e): name(e.last_known_state) for e in store.get_executions_by_context(r.id)}
            for r in run_record.pipeline_runs(store, "taxi")]


def test_a_beam_run_killed_at_the_trainer_completes_when_run_again(tmp_path):
    """The Beam runner (its default: the multi-processing DirectRunner, two workers) on the first 3,000 rows of the
    shipped data (the runner is what is tested; local_run runs all 15,002), killed with SIGKILL as the Trainer
    starts, then run again: what completed comes from the cache, the rest runs. Across the two runs every node
    executed on the Beam engine once."""
    out = str(tmp_path / "out")
    data = tiny_runs.write_sample(str(tmp_path / "data"), 0, rows=3000)
    args = ("run", "taxi", "--engine", "beam", "--data", data, "--train-steps", "50")
    proc = subprocess.Popen([FLYWHEEL, *args, "--output-dir", out], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "▶ Trainer" in line:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any("▶ Trainer" in s for s in seen), "".join(seen)
    assert "on the beam engine" in seen[0], seen[0]
    again = run_cli(*args, output_dir=out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "on the beam engine" in again.stdout
    assert "✓ Transform" in again.stdout and "(cached)" in again.stdout
    assert layout.latest(os.path.join(out, "serving"), "taxi") is not None
    killed, resumed = _node_states(os.path.join(out, "metadata.sqlite"))
    assert set(resumed) == EXPECTED_NODES
    assert {resumed[n] for n in ("Trainer", "Evaluate", "Push")} == {"COMPLETE"}, resumed
    assert {n for run in (killed, resumed) for n, state in run.items() if state == "COMPLETE"} == EXPECTED_NODES
