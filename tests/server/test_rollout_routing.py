"""`flywheel serve` following the rollout state on the real tiny pushed model: canary split (sticky per key),
shadow copies, blue/green switch and rollback, a pinned stable, the request log's rollout columns, and zero
failed requests under load across start, promote and rollback in a real server process."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional

import httpx
import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from flywheel.api.rollout import rollout_analyze
from flywheel.cli.rollout import analyze_lines
from flywheel.rollout import state, store
from flywheel.server import models, request_log, routing, server
from flywheel.server.run import signature_inputs
from flywheel.store import warmup
from flywheel.traffic import join
from tests.conftest import FLYWHEEL, REPO
from tests.server.conftest import ISSUE_ROW, MODEL, add_version, until
from tests.server.test_uvicorn import _free_port

PREDICT = f"/v1/models/{MODEL}:predict"
BODY = {"instances": [ISSUE_ROW]}


@pytest.fixture
def pinned(serving_dir, pushed_version) -> str:
    """Version 1 pinned as stable (a rollout state with no rollout running), then version 2 pushed."""
    store.pin(serving_dir, MODEL)
    add_version(serving_dir, pushed_version, 2)
    return serving_dir


def _app(serving_dir: str, **kwargs) -> tuple[models.ModelRegistry, TestClient]:
    registry = models.ModelRegistry(serving_dir, MODEL, poll_seconds=3600.0)
    return registry, TestClient(server.create_app(registry, **kwargs))


def _log(serving_dir: str, log_dir: str) -> request_log.RequestLog:
    features = signature_inputs(os.path.join(serving_dir, MODEL, "1"))
    return request_log.RequestLog(str(log_dir), features=features)


def _answered_by(client: TestClient, n: int, path: str = PREDICT, headers: dict | None = None) -> collections.Counter:
    seen: collections.Counter = collections.Counter()
    for _ in range(n):
        answer = client.post(path, json=BODY, headers=headers or {})
        assert answer.status_code == 200, answer.text
        seen[answer.headers[routing.VERSION_HEADER]] += 1
    return seen


def _rows(log_dir) -> list[dict]:
    files = sorted(str(p) for p in log_dir.glob("span-*/*.parquet"))
    assert files, f"nothing logged in {log_dir}"
    return [row for f in files for row in pq.read_table(f).to_pylist()]


# ---- the router alone -----------------------------------------------------------------------------------------


def test_the_router_splits_by_percent_and_keeps_a_key_on_one_version():
    router = routing.Router(generation=3, stable=1, candidate=2, candidate_percent=20.0, labels={})
    keys = [f"user-{i}" for i in range(20_000)]
    chosen = {key: router.choose(key)[0] for key in keys}
    assert abs(sum(v == 2 for v in chosen.values()) / len(keys) - 0.20) < 0.01
    assert all(router.choose(key)[0] == chosen[key] for key in keys[:500]), "a key must always get one version"
    wider = routing.Router(generation=4, stable=1, candidate=2, candidate_percent=50.0)
    assert all(wider.choose(k)[0] == 2 for k in keys if chosen[k] == 2), "raising the share keeps canary users"
    assert router.choose(None, draw=lambda: 0.19) == (2, None) and router.choose(None, draw=lambda: 0.2) == (1, None)
    shadow = routing.Router(generation=5, stable=1, candidate=2, mirror=True)
    assert shadow.choose("user-1") == (1, 2) and shadow.role(1) == "stable" and shadow.role(2) == "canary"
    assert routing.Router(generation=6, stable=2).choose("user-1") == (2, None)
    assert routing.Router(generation=6, stable=2).role(2) is None


# ---- the registry and the app follow the state ----------------------------------------------------------------


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_a_canary_takes_its_share_and_a_key_sticks_to_one_version(pinned):
    store.start(pinned, MODEL, 2, state.CANARY, 20.0)
    registry, app = _app(pinned)
    with app as client:
        assert registry.loaded_versions() == [1, 2]
        seen = _answered_by(client, 5000)
        assert set(seen) == {"1", "2"}
        share = 100.0 * seen["2"] / 5000
        assert 17.0 <= share <= 23.0, f"canary 20%: {share:.1f}% answered by the candidate ({seen})"
        for key in ("rider-7", "rider-8", "rider-9", "rider-10"):
            got = _answered_by(client, 20, headers={routing.ROLLOUT_KEY_HEADER: key})
            assert len(got) == 1, f"key {key} got versions {dict(got)}"
            assert _answered_by(client, 5, headers={routing.ROLLOUT_KEY_HEADER: key}).keys() == got.keys()
        assert _answered_by(client, 30, f"/v1/models/{MODEL}/versions/1:predict") == {"1": 30}
        assert _answered_by(client, 5, f"/v1/models/{MODEL}/labels/canary:predict") == {"2": 5}
        assert _answered_by(client, 5, f"/v1/models/{MODEL}/labels/stable:predict") == {"1": 5}
        assert client.get(f"/v1/models/{MODEL}/metadata").json()["model_spec"]["version"] == "1"


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_the_key_header_is_configurable(pinned):
    store.start(pinned, MODEL, 2, state.CANARY, 50.0)
    _, app = _app(pinned, rollout_key_header="X-User")
    key = next(k for k in (f"u{i}" for i in range(100)) if routing.key_share(k) < 0.5)
    with app as client:
        assert _answered_by(client, 20, headers={"X-User": key}) == {"2": 20}
    _, app = _app(pinned, rollout_key_header="X-Request-Id")
    with app as client:
        assert _answered_by(client, 20, headers={"X-Request-Id": key}) == {"2": 20}, "the request id as the key"


def test_a_shadow_never_answers_and_its_answers_are_logged(pinned, tmp_path):
    store.start(pinned, MODEL, 2, state.SHADOW)
    log_dir = tmp_path / "logs"
    _, app = _app(pinned, request_log=_log(pinned, log_dir))
    with app as client:
        assert _answered_by(client, 60) == {"1": 60}
        assert _answered_by(client, 20, headers={routing.ROLLOUT_KEY_HEADER: "rider-1"}) == {"1": 20}
        bad = client.post(PREDICT, json={"instances": [dict(ISSUE_ROW, fare="abc")]}, headers={"X-Request-Id": "bad"})
        assert bad.status_code == 400 and bad.headers[routing.VERSION_HEADER] == "1"
    rows = _rows(log_dir)
    by_role = collections.Counter((r["rollout_role"], r["model_version"], r["status"]) for r in rows)
    assert by_role == {("stable", 1, 200): 80, ("shadow", 2, 200): 80, ("stable", 1, 400): 1}, by_role
    rows = [r for r in rows if r["status"] == 200]
    answered = {r["request_id"]: r["prediction"] for r in rows if r["rollout_role"] == "stable"}
    shadowed = {r["request_id"]: r["prediction"] for r in rows if r["rollout_role"] == "shadow"}
    assert shadowed.keys() == answered.keys()
    assert all(abs(shadowed[k] - answered[k]) < 1e-6 for k in answered), "same model copy: same answers"
    assert all(r["fare"] == ISSUE_ROW["fare"] for r in rows)
    # Labels joined to the log land on the rows clients got: neither the shadow's copies nor failed requests.
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "labels.csv").write_text("request_id,tips\n" + "".join(f"{k},1.0\n" for k in [*answered, "bad"]))
    counts = join.join(str(log_dir), str(labels), "request_id", str(tmp_path / "joined"), label_column="tips")
    assert (counts["joined_rows"], counts["skipped_logs"], counts["duplicate_logs"]) == (80, 81, 0), counts
    joined = [r for span in counts["spans"].values() for r in pq.read_table(span["path"]).to_pylist()]
    assert {(r["rollout_role"], r["model_version"]) for r in joined} == {("stable", 1)}


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_blue_green_switches_on_the_next_poll_and_rolls_back_at_once(pinned):
    registry, app = _app(pinned)
    with app as client:
        assert registry.loaded_versions() == [1]
        assert _answered_by(client, 10) == {"1": 10}
        store.start(pinned, MODEL, 2, state.BLUE_GREEN)
        assert _answered_by(client, 5) == {"1": 5}, "nothing changes before the poll"
        registry.poll()
        assert _answered_by(client, 20) == {"2": 20}
        assert registry.loaded_versions() == [1, 2], "stable stays loaded during a blue/green rollout"
        assert _answered_by(client, 3, f"/v1/models/{MODEL}/labels/stable:predict") == {"1": 3}
        store.rollback(pinned, MODEL, reason="test")
        registry.poll()
        assert _answered_by(client, 20) == {"1": 20}
        registry.poll()
        assert registry.loaded_versions() == [1], "the rolled back candidate is unloaded one poll after the switch"
        assert client.post(f"/v1/models/{MODEL}/labels/canary:predict", json=BODY).status_code == 400


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_a_promoted_canary_serves_everything_and_the_old_stable_leaves(pinned):
    registry, app = _app(pinned)
    with app as client:
        store.start(pinned, MODEL, 2, state.CANARY, 30.0)
        registry.poll()
        assert set(_answered_by(client, 60)) == {"1", "2"}
        store.promote(pinned, MODEL)
        registry.poll()
        assert _answered_by(client, 30) == {"2": 30}
        registry.poll()
        assert registry.loaded_versions() == [2]
        states = {s["version"]: s["state"] for s in client.get(f"/v1/models/{MODEL}").json()["model_version_status"]}
        assert states == {"1": "END", "2": "AVAILABLE"}


def test_a_pinned_stable_is_not_replaced_by_a_new_folder(pinned, pushed_version):
    registry, app = _app(pinned)
    with app as client:
        assert registry.loaded_versions() == [1], "version 2 was pushed after the pin: not loaded"
        add_version(pinned, pushed_version, 3)
        registry.poll()
        assert registry.loaded_versions() == [1]
        assert _answered_by(client, 10) == {"1": 10}
        assert client.post(f"/v1/models/{MODEL}/versions/3:predict", json=BODY).status_code == 404


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_a_candidate_that_fails_to_load_never_takes_traffic(pinned):
    with open(os.path.join(pinned, MODEL, "2", warmup.WARMUP_PATH), "wb") as f:
        f.write(b"\x00" * 40)
    registry, app = _app(pinned)
    with app as client:
        store.start(pinned, MODEL, 2, state.BLUE_GREEN)
        registry.poll()
        assert _answered_by(client, 20) == {"1": 20}, "the old routing keeps serving"
        assert registry.router.candidate is None
        status = client.get(f"/v1/models/{MODEL}/versions/2").json()["model_version_status"][0]
        assert status["state"] == "END" and "warmup" in status["status"]["error_message"]


def test_a_new_candidate_is_warmed_up_before_it_takes_traffic(pinned):
    events: list[str] = []

    def loader(model, version, path):
        events.append(f"load {version}")
        servable = models.load_servable(model, version, path)
        if version == 2:
            signature = servable.signatures["serving_default"]

            def counting(*arrays):
                events.append(f"run 2, default requests to {registry.router and registry.router.choose()[0]}")
                return signature.call(*arrays)

            servable.signatures["serving_default"] = dataclasses.replace(signature, call=counting)
        return servable

    registry = models.ModelRegistry(pinned, MODEL, poll_seconds=3600.0, loader=loader)
    with TestClient(server.create_app(registry)) as client:
        store.start(pinned, MODEL, 2, state.BLUE_GREEN)
        registry.poll()
        events.append("switched")
        assert _answered_by(client, 1) == {"2": 1}
    warmups = len(list(warmup.read(os.path.join(pinned, MODEL, "2"))))
    assert warmups > 0
    assert events[:2 + warmups] == ["load 1", "load 2", *["run 2, default requests to 1"] * warmups]
    assert events[2 + warmups:] == ["switched", "run 2, default requests to 2"]


# ---- the request log ------------------------------------------------------------------------------------------


def test_the_log_has_role_status_and_error_and_logs_failed_requests(pinned, tmp_path):
    log_dir = tmp_path / "logs"
    registry, app = _app(pinned, request_log=_log(pinned, log_dir))
    with app as client:
        ok = client.post(PREDICT, json=BODY, headers={"X-Request-Id": "plain"})
        bad = client.post(PREDICT, json={"instances": [dict(ISSUE_ROW, fare="abc")]}, headers={"X-Request-Id": "bad"})
        broken = client.post(PREDICT, content=b"{", headers={"X-Request-Id": "broken"})
        store.start(pinned, MODEL, 2, state.CANARY, 50.0)
        registry.poll()
        answers = [client.post(PREDICT, json=BODY, headers={"X-Request-Id": f"r{i}"}) for i in range(40)]
    assert ok.status_code == 200 and ok.headers[routing.VERSION_HEADER] == "1"
    assert bad.status_code == 400 and bad.headers[routing.VERSION_HEADER] == "1"
    assert broken.status_code == 400
    rows = {r["request_id"]: r for r in _rows(log_dir)}
    assert {"rollout_role", "status", "error"} <= set(next(iter(rows.values())))
    assert (rows["plain"]["rollout_role"], rows["plain"]["status"], rows["plain"]["error"]) == (None, 200, None)
    assert rows["bad"]["status"] == 400 and "fare" in rows["bad"]["error"] and rows["bad"]["prediction"] is None
    assert rows["bad"]["model_version"] == 1 and rows["bad"]["trip_miles"] == ISSUE_ROW["trip_miles"]
    assert rows["broken"]["status"] == 400 and "JSON" in rows["broken"]["error"]
    for i, answer in enumerate(answers):
        version = int(answer.headers[routing.VERSION_HEADER])
        assert (rows[f"r{i}"]["model_version"], rows[f"r{i}"]["rollout_role"], rows[f"r{i}"]["status"]) == (
            version, {1: "stable", 2: "canary"}[version], 200)


def test_the_log_records_how_each_request_was_routed(pinned, tmp_path):
    """`request_route`: default for the split's requests (answered, failed, and the shadow's copies of them);
    version / label for a request that named one, answered or not."""
    log_dir = tmp_path / "logs"
    store.start(pinned, MODEL, 2, state.CANARY, 50.0)
    _, app = _app(pinned, request_log=_log(pinned, log_dir))
    no_fare = {"instances": [{k: v for k, v in ISSUE_ROW.items() if k != "fare"}]}
    sent = {"d0": (PREDICT, BODY), "d1": (PREDICT, BODY), "dbad": (PREDICT, no_fare),
            "v2": (f"/v1/models/{MODEL}/versions/2:predict", BODY),
            "v9": (f"/v1/models/{MODEL}/versions/9:predict", BODY),
            "lc": (f"/v1/models/{MODEL}/labels/canary:predict", BODY),
            "ls": (f"/v1/models/{MODEL}/labels/stable:predict", BODY),
            "lbad": (f"/v1/models/{MODEL}/labels/canary:predict", no_fare)}
    with app as client:
        status = {rid: client.post(path, json=body, headers={"X-Request-Id": rid}).status_code
                  for rid, (path, body) in sent.items()}
    assert status == {"d0": 200, "d1": 200, "dbad": 400, "v2": 200, "v9": 404, "lc": 200, "ls": 200, "lbad": 400}
    rows = {r["request_id"]: r for r in _rows(log_dir)}
    routed = {rid: (r["request_route"], r["model_version"], r["rollout_role"]) for rid, r in rows.items()}
    assert {rid: route for rid, (route, _, _) in routed.items()} == {
        "d0": "default", "d1": "default", "dbad": "default", "v2": "version", "v9": "version", "lc": "label",
        "ls": "label", "lbad": "label"}
    assert routed["lc"][1:] == routed["lbad"][1:] == (2, "canary") and routed["ls"][1:] == (1, "stable")
    assert routed["v9"][1] is None, "no such version: nothing answered"

    store.rollback(pinned, MODEL)
    store.start(pinned, MODEL, 2, state.SHADOW)
    shadow_dir = tmp_path / "shadow_logs"
    _, app = _app(pinned, request_log=_log(pinned, shadow_dir))
    with app as client:
        assert client.post(PREDICT, json=BODY, headers={"X-Request-Id": "s"}).status_code == 200
        assert client.post(f"/v1/models/{MODEL}/labels/canary:predict", json=BODY,
                           headers={"X-Request-Id": "sc"}).status_code == 200
    shadowed = collections.Counter((r["request_id"], r["rollout_role"], r["request_route"]) for r in _rows(shadow_dir))
    assert shadowed == {("s", "stable", "default"): 1, ("s", "shadow", "default"): 1, ("sc", "canary", "label"): 1}


def test_hostile_requests_naming_the_canary_do_not_sink_a_healthy_one(pinned, tmp_path, capsys):
    """A 50 % canary of a copy of stable, behind the real app and request log: 300 requests through the split,
    and 80 bodies missing `fare` sent to /labels/canary. The analysis judges the split's requests only: PROMOTE,
    with the 80 counted apart in its output."""
    from flywheel import cli
    from flywheel.cli import exits

    log_dir = tmp_path / "logs"
    store.start(pinned, MODEL, 2, state.CANARY, 50.0)
    _, app = _app(pinned, request_log=_log(pinned, log_dir))
    no_fare = {"instances": [{k: v for k, v in ISSUE_ROW.items() if k != "fare"}]}
    with app as client:
        split = [client.post(PREDICT, json={"instances": [dict(ISSUE_ROW, fare=2.0 + (i % 50), trip_miles=0.1 * i)]},
                             headers={"X-Request-Id": f"r{i}"}) for i in range(300)]
        hostile = [client.post(f"/v1/models/{MODEL}/labels/canary:predict", json=no_fare,
                               headers={"X-Request-Id": f"h{i}"}) for i in range(80)]
    assert {a.status_code for a in split} == {200} and {a.status_code for a in hostile} == {400}
    where = ["--serving-dir", pinned, "--model", MODEL, "--log-dir", str(log_dir)]
    assert cli.main(["rollout", "analyze", *where, "--dry-run"]) == exits.OK
    out = capsys.readouterr().out
    assert out.startswith("flywheel rollout analyze: PROMOTE candidate 2 vs stable 1"), out
    assert "not judged: 80 named a label (stable 1: 0, candidate 2: 80; 80 not answered)" in out, out
    result = rollout_analyze(pinned, MODEL, str(log_dir), apply=False)
    assert result.analysis.stable.requests + result.analysis.candidate.requests == 300
    assert result.analysis.candidate.client_errors == 0


@pytest.mark.slow  # seconds of load or waiting (the unit lane keeps to 2 minutes)
def test_a_candidate_that_fails_requests_is_rolled_back_by_the_analysis_with_the_evidence(pinned, tmp_path):
    """A candidate whose model fails inside TensorFlow on fares above 10 (a 500, not bad input), as a 50 % canary
    behind the real app and request log: the analysis of the log rolls it back by itself, naming the error rate."""
    from tests.rollout.conftest import add_version as publish
    from tests.rollout.conftest import constant_model

    publish(pinned, constant_model(str(tmp_path / "failing"), list(ISSUE_ROW), fail_above_fare=10.0), 3)
    log_dir = tmp_path / "logs"
    registry, app = _app(pinned, request_log=_log(pinned, log_dir))
    store.start(pinned, MODEL, 3, state.CANARY, 50.0, reason="a model that fails")
    fares = (5.0, 8.5, 12.0, 30.0)
    with app as client:
        registry.poll()
        answers = [client.post(PREDICT, json={"instances": [dict(ISSUE_ROW, fare=fares[i % 4])]},
                               headers={"X-Request-Id": f"r{i}"}) for i in range(320)]
    by_version = collections.Counter((a.headers[routing.VERSION_HEADER], a.status_code) for a in answers)
    assert by_version[("1", 200)] > 100 and by_version[("3", 500)] > 40 and by_version[("3", 200)] > 40, by_version
    assert set(by_version) == {("1", 200), ("3", 200), ("3", 500)}, "stable answers every fare"

    result = rollout_analyze(pinned, MODEL, str(log_dir), report_dir=str(tmp_path / "report"))
    assert result.decision == result.applied == "rollback", analyze_lines(result)
    error_rate = result.analysis.check("error_rate")
    assert error_rate.passed is False and 0.4 < result.analysis.candidate.error_rate < 0.6
    assert result.analysis.stable.error_rate == 0.0 and result.analysis.check("client_error_rate").passed
    after = store.load(pinned, MODEL)
    assert after.candidate is None and after.stable == 1 and 3 in after.rolled_back
    assert "error_rate" in after.decisions[-1].reason
    page = (tmp_path / "report" / "report.html").read_text()
    assert "ROLLBACK" in page and "error_rate" in page


# ---- a real server under load ---------------------------------------------------------------------------------


class _Load:
    """Clients sending requests without pause: client i to paths[i % len(paths)] (a POST to a :predict path, a GET
    to a metadata path). An answer counts when it is a 200 holding `predictions` (`metadata`); anything else is a
    failure, kept with the path. Default-route answers are counted by version. bodies: {path: body} for paths
    that take another body than BODY (a :classify or :regress path's answer must hold `results`)."""

    def __init__(self, base: str, clients: int = 3, paths: tuple[str, ...] = (PREDICT,),
                 bodies: Optional[dict[str, dict]] = None):
        self.base, self.stop, self.bodies = base, threading.Event(), bodies or {}
        self.versions: collections.Counter = collections.Counter()
        self.answered: collections.Counter = collections.Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(clients)
        self.futures = [self.pool.submit(self._run, i, paths[i % len(paths)]) for i in range(clients)]

    def _run(self, client: int, path: str) -> None:
        field = ("metadata" if path.endswith("/metadata") else "results" if path.endswith((":classify", ":regress"))
                 else "predictions")
        body = self.bodies.get(path, BODY)
        with httpx.Client(base_url=self.base, timeout=30) as http:
            n = 0
            while not self.stop.is_set():
                n += 1
                headers = {routing.ROLLOUT_KEY_HEADER: f"rider-{client}-{n % 7}"} if client == 0 else {}
                try:
                    answer = http.get(path) if field == "metadata" else http.post(path, json=body, headers=headers)
                    ok = answer.status_code == 200 and field in answer.json()
                    what = f"{path}: {answer.status_code} {answer.text[:200]}"
                except httpx.HTTPError as e:
                    ok, what = False, f"{path}: {type(e).__name__}: {e}"
                with self.lock:
                    if ok:
                        self.answered[path] += 1
                        if path == PREDICT:
                            self.versions[answer.headers[routing.VERSION_HEADER]] += 1
                    else:
                        self.failures.append(what)

    def wait_for(self, version: str, only: bool, deadline_s: float = 120.0) -> None:
        """Until `version` answers (only: answers nothing else since the call)."""
        with self.lock:
            self.versions.clear()
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with self.lock:
                seen = dict(self.versions)
                if only and seen.get(version, 0) >= 20 and set(seen) == {version}:
                    return
                if only and set(seen) != {version}:
                    self.versions.clear()
                if not only and seen.get(version, 0) >= 5:
                    return
        raise AssertionError(f"version {version} {'alone ' if only else ''}never answered; seen {seen}")

    def close(self) -> int:
        self.stop.set()
        for future in self.futures:
            future.result()
        self.pool.shutdown()
        return sum(self.versions.values())


def _burn_cores() -> list[subprocess.Popen]:
    """One process spinning on each core for the caller's duration (kill them in a finally)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]


@contextlib.contextmanager
def _served_on_busy_cores(*args: str, model: str = MODEL):
    """`flywheel serve ARGS --port <free>` as a process with every core kept busy by other processes, yielded as
    (process, port) once it answers; stopped after, and it must have exited cleanly."""
    port = _free_port()
    proc = subprocess.Popen([FLYWHEEL, "serve", *args, "--port", str(port)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    burners = _burn_cores()

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/models/{model}", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        until(up, "the server answers")
        yield proc, port
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.returncode == 0, proc.stderr.read()


def _version_state(base: str, version: int) -> str:
    """The version's state in the server's model status (TF Serving's GET /v1/models/<model>/versions/<v>)."""
    return httpx.get(f"{base}/v1/models/{MODEL}/versions/{version}", timeout=30).json()["model_version_status"][0][
        "state"]


def _label_serves(base: str, label: str) -> bool:
    return httpx.get(f"{base}/v1/models/{MODEL}/labels/{label}", timeout=30).status_code == 200


@pytest.mark.slow  # a flywheel process
def test_every_answer_holds_predictions_across_every_kind_of_rollout_with_busy_cores(pinned, pushed_version, tmp_path):
    """A real server process with its request log, every core kept busy by other processes, and clients on the
    default route, /versions/1 (stable until the first promote), /labels/stable and the metadata route, across
    every kind of change: a shadow start (with requests sent the moment it is written), a promote, a canary
    (50 %) start and its promote, a blue/green start and a rollback (the rolled-back version is unloaded under
    load), a second shadow and its rollback. Every answer is a 200 with `predictions` (`metadata`); requests
    sent right after the shadow start on the default route and on /versions/<stable> are answered by stable."""
    load, stable_load = None, None
    with _served_on_busy_cores("--serving-dir", pinned, "--log-dir", str(tmp_path / "logs")) as (proc, port):
        base = f"http://127.0.0.1:{port}"
        try:
            load = _Load(base, clients=3, paths=(PREDICT, f"/v1/models/{MODEL}/labels/stable:predict",
                                                 f"/v1/models/{MODEL}/metadata"))
            stable_load = _Load(base, clients=1, paths=(f"/v1/models/{MODEL}/versions/1:predict",))
            load.wait_for("1", only=True)
            store.start(pinned, MODEL, 2, state.SHADOW)
            with httpx.Client(base_url=base, timeout=30) as http:
                for _ in range(20):  # while the server loads and warms the candidate up, and as it switches
                    for path in (PREDICT, f"/v1/models/{MODEL}/versions/1:predict"):
                        answer = http.post(path, json=BODY)
                        assert answer.status_code == 200 and "predictions" in answer.json(), (path, answer.text)
                        assert answer.headers[routing.VERSION_HEADER] == "1", "shadow: stable answers"
            until(lambda: _label_serves(base, "canary"), "the shadow routing takes over")
            stable_load.close()  # version 1 leaves at the promote
            store.promote(pinned, MODEL)
            load.wait_for("2", only=True)
            add_version(pinned, pushed_version, 3)
            store.start(pinned, MODEL, 3, state.CANARY, 50.0)
            load.wait_for("3", only=False)
            store.promote(pinned, MODEL)
            load.wait_for("3", only=True)
            add_version(pinned, pushed_version, 4)
            store.start(pinned, MODEL, 4, state.BLUE_GREEN)
            load.wait_for("4", only=True)
            store.rollback(pinned, MODEL)
            load.wait_for("3", only=True)
            until(lambda: _version_state(base, 4) == "END", "the rolled back version is unloaded under load too")
            store.start(pinned, MODEL, 4, state.SHADOW)
            until(lambda: _label_serves(base, "canary"), "the second shadow takes over")
            store.rollback(pinned, MODEL)
            until(lambda: not _label_serves(base, "canary"), "the rollback takes effect")
            load.wait_for("3", only=True)
            assert not load.failures and not stable_load.failures, (load.failures + stable_load.failures)[:5]
        finally:
            answered = load.close() if load is not None else 0
            if stable_load is not None:
                stable_load.close()
    failures = load.failures + stable_load.failures
    assert not failures, f"{len(failures)} answers without predictions: {failures[:5]}"
    assert answered > 0 and min(load.answered.values()) > 0 and stable_load.answered, (load.answered,
                                                                                          stable_load.answered)


def _raw_request(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
            "\r\n").encode("latin-1") + data


def _raw_answer(sock: socket.socket) -> tuple[int, dict, str]:
    """(status, headers, body) of one HTTP/1.1 answer read from a keep-alive connection; ConnectionError when the
    server closed it instead of answering."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the server closed the connection without answering (read {data!r})")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection in the middle of an answer")
        body += chunk
    return int(lines[0].split()[1]), headers, body.decode()


@pytest.mark.slow  # a flywheel process
def test_a_request_sent_at_the_keep_alive_deadline_while_the_server_runs_late_is_answered(pinned, tmp_path):
    """The outside check's failure (issue 19): a client reused its keep-alive connection right after running
    `flywheel rollout start --shadow` (the CLI took about the keep-alive timeout on a busy machine) and got no
    answer. uvloop runs due timers before it reads sockets: when the event loop ran late (busy cores, the thread
    loading the candidate), the keep-alive timer closed a connection whose next request had already arrived,
    unread (a reset). Made certain here: the server process is stopped (SIGSTOP) across each rollout switch (the
    CLI, run meanwhile) until its keep-alive deadline has passed, the next requests are sent on the same
    connections (default route and /versions/<stable>), then it resumes. Every one must be answered with
    predictions."""
    keep_alive = 1.0
    connections, stopped = {}, False
    paths = (PREDICT, f"/v1/models/{MODEL}/versions/1:predict")  # the default route, and stable named
    with _served_on_busy_cores("--serving-dir", pinned, "--log-dir", str(tmp_path / "logs"),
                               "--keep-alive-timeout", str(keep_alive)) as (proc, port):
        try:
            connections = {path: socket.create_connection(("127.0.0.1", port), timeout=60) for path in paths}
            failures = []
            for switch in ("start", "rollback", "start", "rollback", "start", "rollback"):
                answered = {}
                for path, sock in connections.items():
                    sock.sendall(_raw_request(path, BODY))
                    status, _, text = _raw_answer(sock)
                    assert status == 200 and "predictions" in json.loads(text), (path, status, text)
                    answered[path] = time.monotonic()
                os.kill(proc.pid, signal.SIGSTOP)
                stopped = True
                args = ["start", "--version", "2", "--shadow"] if switch == "start" else ["rollback"]
                cli = subprocess.run([FLYWHEEL, "rollout", *args, "--serving-dir", pinned], cwd=REPO,
                                     capture_output=True, text=True, timeout=300)
                assert cli.returncode == 0, cli.stderr
                due = max(answered.values()) + keep_alive + 0.3
                until(lambda due=due: time.monotonic() > due, "the connections' keep-alive deadline passes",
                       deadline_s=10)
                for path, sock in connections.items():
                    sock.sendall(_raw_request(path, BODY))
                os.kill(proc.pid, signal.SIGCONT)
                stopped = False
                for path, sock in list(connections.items()):
                    try:
                        status, headers, text = _raw_answer(sock)
                        if status != 200 or "predictions" not in json.loads(text):
                            failures.append(f"after {switch}: {path}: {status} {headers} {text[:200]}")
                    except OSError as e:  # the reset: the request was thrown away with its connection
                        failures.append(f"after {switch}: {path}: {type(e).__name__}: {e}")
                        sock.close()
                        connections[path] = socket.create_connection(("127.0.0.1", port), timeout=60)
            assert not failures, f"{len(failures)} of 12 requests sent at the keep-alive deadline got no answer " \
                                 f"with predictions: {failures}"
        finally:
            if stopped:
                os.kill(proc.pid, signal.SIGCONT)
            for sock in connections.values():
                sock.close()


@pytest.mark.slow  # a flywheel process
def test_an_idle_connection_outlives_the_clients_keep_alive_across_a_shadow_start(pinned):
    """The other half of issue 19's lost answer: uvicorn's keep-alive default (5 s) equals httpx's (a client stops
    reusing an idle connection after 5 s by its own clock, which starts when it has read the answer, after the
    server's did), so a client idle for just under 5 s across `flywheel rollout start --shadow` reused a
    connection the server was closing. The server's default now outlasts it: a connection idle for longer than
    httpx's 5 s across a shadow start, with every core busy, still answers the default route and /versions/<stable>
    (and httpx's own client, idle as long, gets its answers)."""
    connections = {}
    paths = (PREDICT, f"/v1/models/{MODEL}/versions/1:predict")
    with _served_on_busy_cores("--serving-dir", pinned) as (proc, port):
        try:
            connections = {path: socket.create_connection(("127.0.0.1", port), timeout=60) for path in paths}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                for path, sock in connections.items():
                    sock.sendall(_raw_request(path, BODY))
                    status, _, text = _raw_answer(sock)
                    assert status == 200 and "predictions" in json.loads(text), (path, status, text)
                    assert http.post(path, json=BODY).status_code == 200
                answered = time.monotonic()
                cli = subprocess.run([FLYWHEEL, "rollout", "start", "--version", "2", "--shadow", "--serving-dir",
                                      pinned], cwd=REPO, capture_output=True, text=True, timeout=300)
                assert cli.returncode == 0, cli.stderr
                until(lambda: time.monotonic() > answered + 5.5, "httpx's keep-alive expiry (5 s) passes",
                       deadline_s=10)
                for path, sock in connections.items():
                    sock.sendall(_raw_request(path, BODY))
                    try:
                        status, _, text = _raw_answer(sock)
                    except OSError as e:
                        raise AssertionError(f"{path}: the server closed a connection idle 5.5 s: {e}") from None
                    assert status == 200 and "predictions" in json.loads(text), (path, status, text)
                    answer = http.post(path, json=BODY)
                    assert answer.status_code == 200 and "predictions" in answer.json(), (path, answer.text)
        finally:
            for sock in connections.values():
                sock.close()


@pytest.mark.slow  # a flywheel process
def test_classify_regress_and_metadata_answer_across_a_rollout_with_busy_cores(tmp_path):
    """`:classify`, `:regress` and the metadata route are not split: they answer from stable (or the version or
    label they name). TF Serving's half_plus_two test model (versions 123 and 124) in a real server process, every
    core busy, clients on each, across a blue/green start, a promote, a shadow and a rollback: every answer is a
    200 with `results` (`metadata`)."""
    from tests.server import tf_serving_models

    built = tf_serving_models.build(str(tmp_path / "models"))
    name = tf_serving_models.TWO_VERSIONS
    folder = os.path.dirname(built[name])
    store.pin(folder, name)
    model = f"/v1/models/{name}"
    bodies = {f"{model}:classify": {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}, {"x": 2.0}]},
              f"{model}:regress": {"signature_name": "regress_x_to_y", "examples": [{"x": 80.0}]},
              f"{model}/labels/stable:regress": {"signature_name": "regress_x_to_y", "examples": [{"x": 3.0}]}}
    load = None
    with _served_on_busy_cores("--serving-dir", folder, "--model", name, model=name) as (proc, port):
        base = f"http://127.0.0.1:{port}"

        def label_serves(label: str) -> bool:
            return httpx.get(f"{base}{model}/labels/{label}", timeout=30).status_code == 200

        try:
            load = _Load(base, clients=4, paths=(*bodies, f"{model}/metadata"), bodies=bodies)
            until(lambda: len(load.answered) == 4 and min(load.answered.values()) >= 5, "every client answered")
            store.start(folder, name, 123, state.BLUE_GREEN)
            until(lambda: label_serves("canary"), "the blue/green start takes effect")
            store.promote(folder, name)
            until(lambda: not label_serves("canary"), "the promote takes effect")
            store.start(folder, name, 124, state.SHADOW)
            until(lambda: label_serves("canary"), "the shadow takes effect")
            store.rollback(folder, name)
            until(lambda: not label_serves("canary"), "the rollback takes effect")
            before = dict(load.answered)
            until(lambda: all(load.answered[p] >= before[p] + 5 for p in before), "answers after the rollback")
        finally:
            if load is not None:
                load.close()
    assert not load.failures, f"{len(load.failures)} answers without results or metadata: {load.failures[:5]}"
