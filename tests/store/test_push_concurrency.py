"""Pushes from several processes into one serving folder: distinct versions, complete versions, no lost work.

Each worker is a separate Python process (as two pipeline runs would be), started together and released
at once through a "go" file, so their claims and copies overlap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from flywheel.store import layout, publish

WORKER = r"""
import json, os, sys, time
from flywheel.store import publish

job = json.loads(sys.argv[1])
print("ready", flush=True)
while job.get("go") and not os.path.exists(job["go"]):
    time.sleep(0.005)
if job["mode"] == "publish":
    args = (job["model"], job["serving_dir"], "taxi", {"writer": job["name"]})
    if job["lock"]:
        with publish.serving_lock(os.path.join(job["serving_dir"], "taxi")):
            print(json.dumps(publish.publish(*args, now=job["now"])), flush=True)
    else:
        print(json.dumps(publish.publish(*args, now=job["now"])), flush=True)
elif job["mode"] == "claim":
    claims = [publish.claim_version(job["root"], now=job["now"]) for _ in range(job["n"])]
    print(json.dumps([c.version for c in claims]), flush=True)
elif job["mode"] == "hold":
    claim = publish.claim_version(job["root"])
    print(json.dumps([claim.version, claim.marker]), flush=True)
    sys.stdin.read()
elif job["mode"] == "lock":
    with publish.serving_lock(job["root"]):
        print("locked", flush=True)
        sys.stdin.read()
"""


def _start(job: dict, log_dir) -> subprocess.Popen:
    log = open(os.path.join(log_dir, f"worker-{len(os.listdir(log_dir))}.log"), "w")
    proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(job)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    proc.log = log.name
    assert proc.stdout.readline().strip() == "ready", open(log.name).read()
    return proc


def _answer(proc: subprocess.Popen):
    line = proc.stdout.readline()
    assert line, f"worker {proc.pid} exited with {proc.wait()} before answering: {open(proc.log).read()}"
    return line.strip() if line.strip() == "locked" else json.loads(line)


def _model(tmp_path) -> str:
    model = tmp_path / "model"
    (model / "variables").mkdir(parents=True)
    for i in range(60):  # enough files that two copies overlap in time
        (model / "variables" / f"shard-{i:03d}").write_bytes(os.urandom(16 << 10))
    (model / "saved_model.pb").write_bytes(b"graph")
    return str(model)


def test_concurrent_publishes_take_distinct_versions_and_each_is_complete(tmp_path):
    model, serving_dir, go = _model(tmp_path), str(tmp_path / "serving"), str(tmp_path / "go")
    logs = tmp_path / "logs"
    logs.mkdir()
    now = time.time()  # the same candidate number for every writer: only the claim keeps them apart
    workers = [_start({"mode": "publish", "model": model, "serving_dir": serving_dir, "go": go, "now": now,
                       "lock": lock, "name": f"w{i}"}, logs) for i, lock in enumerate([False, False, True])]
    open(go, "w").close()
    results = [_answer(w) for w in workers]
    assert all(w.wait(timeout=120) == 0 for w in workers)
    versions = [version for version, _ in results]
    assert len(set(versions)) == 3 and layout.versions(serving_dir, "taxi") == sorted(versions)
    source_files = publish.tree(model)[1]
    for i, (version, path) in enumerate(results):
        manifest = layout.read_manifest(os.path.join(path, layout.MANIFEST_FILE))
        assert manifest["version"] == version and manifest["writer"] == f"w{i}"
        assert sorted(publish.tree(path)[1]) == sorted(source_files + [layout.MANIFEST_FILE])
        for rel in source_files:
            with open(os.path.join(model, rel), "rb") as a, open(os.path.join(path, rel), "rb") as b:
                assert a.read() == b.read(), f"{path}/{rel} differs from the model"
    leftovers = [n for n in os.listdir(os.path.join(serving_dir, "taxi")) if n.startswith(publish.TMP_PREFIX)]
    assert leftovers == []


def test_claims_are_exclusive_without_the_lock(tmp_path):
    root, go = str(tmp_path / "serving" / "taxi"), str(tmp_path / "go")
    os.makedirs(root)
    workers = [_start({"mode": "claim", "root": root, "go": go, "now": 1000.0, "n": 8}, tmp_path) for _ in range(3)]
    open(go, "w").close()
    claimed = [v for w in workers for v in _answer(w)]
    assert all(w.wait(timeout=120) == 0 for w in workers)
    assert len(claimed) == 24 and len(set(claimed)) == 24, sorted(claimed)


def test_a_dead_writers_temp_folder_is_cleaned_and_a_live_writers_kept(tmp_path):
    root = tmp_path / "serving" / "taxi"
    root.mkdir(parents=True)
    dead, live = _start({"mode": "hold", "root": str(root)}, tmp_path), _start({"mode": "hold", "root": str(root)},
                                                                                tmp_path)
    (dead_version, dead_marker), (live_version, live_marker) = _answer(dead), _answer(live)
    try:
        os.kill(dead.pid, signal.SIGKILL)  # a crash mid-push: its marker stays behind
        dead.wait(timeout=30)
        (tmp_path / "model" / "variables").mkdir(parents=True)
        (tmp_path / "model" / "saved_model.pb").write_bytes(b"m")
        version, _ = publish.publish(str(tmp_path / "model"), str(tmp_path / "serving"), "taxi", {})
        assert not os.path.exists(dead_marker), "the dead writer's temporary folder is removed"
        assert os.path.isdir(live_marker), "a live writer's work in progress is never removed"
        assert version not in (live_version, dead_version) and version > live_version
    finally:
        live.stdin.close()
        live.wait(timeout=30)


def test_the_serving_lock_waits_for_its_holder_and_dies_with_it(tmp_path):
    root = str(tmp_path / "serving" / "taxi")
    holder = _start({"mode": "lock", "root": root}, tmp_path)
    assert _answer(holder) == "locked"
    started = time.monotonic()
    with pytest.raises(publish.PushError, match=f"locked by pid {holder.pid} on .*; waited 1 s"):
        with publish.serving_lock(root, timeout=1.0):
            pass
    assert time.monotonic() - started >= 1.0
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait(timeout=30)
    with publish.serving_lock(root, timeout=5.0):
        pass
