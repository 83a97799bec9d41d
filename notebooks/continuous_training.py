# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # flywheel: the continuous-training loop
# Production data arrives in spans. Spans 1 and 2 look like the training data; from span 3 on,
# fares, trip lengths, hours, payment types and tipping behaviour all move. After each span the
# scheduled job (`flywheel retrain --if-drift`) asks the drift monitor whether the newest span still
# looks like what the serving model was trained on, and retrains, evaluates and pushes only if not.
#
# Span 3 does not arrive as a training file: its trips reach the model as requests to `flywheel serve`,
# which logs them. The monitor reads the request log, the labels (the tips) arrive later and are joined
# to the logged requests, and the job retrains on what production really sent; the running server
# picks the new version up without a restart.

# %%
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from flywheel import quiet

quiet.quiet_environment(verbose=False)  # before TensorFlow is imported: no warnings buried in the cells

from IPython.display import HTML, display  # noqa: E402

import flywheel  # noqa: E402
from flywheel import schemas  # noqa: E402
from flywheel.api.rollout import rollout_analyze, rollout_start, rollout_status  # noqa: E402
from flywheel.cli.pipeline import lineage_lines, simulate_lines  # noqa: E402
from flywheel.cli.rollout import analyze_lines, rollout_lines  # noqa: E402
from flywheel.cli.traffic import join_lines, replay_lines  # noqa: E402

ROWS = int(os.environ.get("FLYWHEEL_NOTEBOOK_ROWS", "3000"))
STEPS = int(os.environ.get("FLYWHEEL_NOTEBOOK_STEPS", "200"))
work = tempfile.mkdtemp(prefix="flywheel-loop-")
incoming, data, out = (os.path.join(work, d) for d in ("incoming", "data", "out"))

# %% [markdown]
# ## Three spans of production data, drift from span 3

# %%
print("\n".join(simulate_lines(flywheel.simulate("taxi", incoming, spans=3, drift_from=3, rows=ROWS))))
os.makedirs(data)


def arrive(span):
    """A span lands; the scheduled job runs (`flywheel retrain taxi --if-drift` calls the same function)."""
    shutil.copytree(os.path.join(incoming, f"span-{span}"), os.path.join(data, f"span-{span}"))
    return flywheel.retrain("taxi", data, out, if_drift=True, train_steps=STEPS)


def shown(result, keys=("span", "drift_detected", "retrained", "blessed", "pushed", "model_version",
                        "drift_reason")):
    """The job's answer, the fields that tell the story."""
    return {k: result.to_dict()[k] for k in keys}


# %% [markdown]
# ## Span 1: nothing in serving yet (no baseline, which is not drift), so the job trains and pushes

# %%
first = arrive(1)
print(shown(first))

# %% [markdown]
# ## Span 2: same distribution, no drift, nothing to do (answered without TensorFlow)

# %%
second = arrive(2)
print(shown(second))

# %% [markdown]
# ## Serving: version 1 answers requests, and every request is logged
# `flywheel serve` speaks TF Serving's REST API; `--log-dir` writes each request's features, prediction
# and latency as Parquet under `span-N/` (N = the UTC day), the layout Ingest and the monitor read.
# `--rollout-key-header X-Request-Id` keeps each trip on one version while a canary runs later (the split is a
# hash of the key, not a coin toss per request).

# %%
serving_dir, logs = os.path.join(out, "serving"), os.path.join(work, "request_logs")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "flywheel.cli", "serve", "--serving-dir", serving_dir,
                           "--port", str(port), "--log-dir", logs, "--rollout-key-header", "X-Request-Id"],
                          stderr=subprocess.DEVNULL)
url = f"http://127.0.0.1:{port}/v1/models/taxi"


def served_versions():
    """The versions the running server reports AVAILABLE (GET /v1/models/taxi, as TF Serving answers it)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            status = json.load(answer)["model_version_status"]
    except OSError:
        return []
    return sorted(int(v["version"]) for v in status if v["state"] == "AVAILABLE")


def wait_until(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert server.poll() is None, "flywheel serve exited"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.5)


wait_until(served_versions, "model version available")
print("serving versions:", served_versions())

# %% [markdown]
# ## Span 3's trips arrive as requests
# `flywheel replay` sends each row without its label, with `X-Request-Id` = the trip's id.

# %%
sent = flywheel.replay("taxi", os.path.join(incoming, "span-3"), url, id_column="trip_id")
print("\n".join(replay_lines(sent)))


def logged_rows():
    import pyarrow.parquet as pq

    files = [os.path.join(r, f) for r, _, names in os.walk(logs) for f in names if f.endswith(".parquet")]
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files if not os.path.basename(f).startswith("."))


# The log is written in batches, within one flush interval (5 s).
wait_until(lambda: logged_rows() >= sent.rows_sent, "complete request log")
print("logged rows:", logged_rows())

# %% [markdown]
# ## The monitor reads the request log
# Against the serving model's baseline profile (its training data, and its scores on eval examples):
# feature drift, and the shift of the predictions themselves.

# %%
baseline = os.path.join(serving_dir, "taxi", str(first.model_version), "baseline_profile.json")
report_dir = os.path.join(work, "drift_report")
verdict = flywheel.monitor(baseline, logs, schema=schemas.schema_path("taxi"), report_dir=report_dir)
print("drift detected:", verdict.drift_detected, "in", verdict.drifted)
print("prediction drift:", verdict.to_dict()["prediction"]["drift"])
display(HTML(open(verdict.report).read()))

# %% [markdown]
# ## The labels arrive later, joined to the logged requests by trip id
# The original records (with `tips`) keyed by `trip_id`, matched with the logged `request_id`. The joined
# rows land in the data folder as span 3, after the spans trained on before.

# %%
labelled = flywheel.logs_join(logs, os.path.join(incoming, "span-3"), "trip_id", data, span=3)
print("\n".join(join_lines(labelled)))
print("spans:", sorted(os.listdir(data)))

# %% [markdown]
# ## The job retrains on what production sent, and releases the new version as a canary
# Push publishes only a blessed model. With `release="canary:50"` (`flywheel retrain ... --release canary:50`)
# the version served now is pinned as **stable** before the pipeline runs, and the version Push publishes
# becomes the **candidate** of a canary rollout: it answers half of the requests, stable the other half.
# Every decision is recorded in the run's ML-Metadata store.

# %%
result = flywheel.retrain("taxi", data, out, if_drift=True, train_steps=STEPS, release="canary:50")
print(shown(result, ("window", "drift_detected", "retrained", "blessed", "pushed", "model_version",
                     "pushed_version", "release")))
new, metadata = result.pushed_version, os.path.join(out, "metadata.sqlite")
print("\n".join(rollout_lines(rollout_status(serving_dir))))

# %% [markdown]
# ## Release: the retrained model as a canary
# The running server follows the rollout state (`rollout.json` beside the versions) on its next poll, without a
# restart: it loads and warms up the candidate, then splits the traffic. Span 3 is sent again; each answer
# names its version in `X-Model-Version`, and the request log records the version and its role.

# %%
wait_until(lambda: new in served_versions(), "the candidate served")
print("serving versions:", served_versions(), "- the same server process:", server.poll() is None)


def answered_since(started):
    """Logged requests by (version, role) since a rollout started: the split the server made."""
    import collections
    import datetime

    import pyarrow.parquet as pq

    since = datetime.datetime.fromisoformat(started)
    rows = pq.read_table(logs, columns=["time", "model_version", "rollout_role"]).to_pylist()
    return dict(collections.Counter((r["model_version"], r["rollout_role"]) for r in rows if r["time"] >= since))


replays = [sent]
replays.append(flywheel.replay("taxi", os.path.join(incoming, "span-3"), url, id_column="trip_id"))
print("\n".join(replay_lines(replays[-1])))
wait_until(lambda: logged_rows() >= sum(r.rows_sent for r in replays), "complete request log")
print("answered by (version, role):", answered_since(rollout_status(serving_dir).state["started"]))

# %% [markdown]
# ## Analysis: the candidate against stable, on the traffic it answered
# The labels of these trips are joined to the log again; `rollout_analyze` (`flywheel rollout analyze`)
# compares the two versions on the requests logged since the rollout started — error rate, p99 latency, the
# distribution of the predictions, a constant-output check and the AUC on the labelled rows — and applies its
# decision. A retrained model is expected to answer differently from the old one on drifted data: with labels
# saying it ranks no worse, a shifted prediction distribution fails its check without blocking the release
# (the check shows `FAIL, does not block` and why).

# %%
joined = os.path.join(work, "joined")
print("\n".join(join_lines(flywheel.logs_join(logs, os.path.join(incoming, "span-3"), "trip_id", joined))))


def show(analyzed):
    print("\n".join(analyze_lines(analyzed)))
    for check in analyzed.analysis.checks:
        verdict = {True: "pass", False: "FAIL", None: "not evaluated"}[check.passed]
        verdict += ", does not block" if check.overruled else ""
        print(f"  check {check.name:<17} {verdict:<13} {check.detail}")
    print("decision:", analyzed.decision, "- applied:", analyzed.applied)


analyzed = rollout_analyze(serving_dir, "taxi", logs, labels=joined,
                           report_dir=os.path.join(work, "release"), metadata=metadata)
show(analyzed)
display(HTML(open(analyzed.analysis.report).read()))
print("\n".join(rollout_lines(rollout_status(serving_dir))))

# %% [markdown]
# ## A bad model is rolled back by itself
# A model that answers every request, but says nothing: 0.3 for every trip, with the served model's raw inputs
# (read from the server's `/metadata`). It is built by a separate process, as another training job would build
# it, published the way Push publishes a version (a claimed version number, written under a staging name and
# renamed into `<serving>/taxi/<version>` with its `push.json`), and started as a 50 % canary. A thousand trips
# of span 3 are enough to judge it.

# %%
CONSTANT_MODEL = """
import json, sys
import tensorflow as tf
from tensorflow.core.framework import types_pb2

specs = {name: tf.TensorSpec([None if int(d["size"]) < 0 else int(d["size"]) for d in spec["tensor_shape"]["dim"]],
                             tf.as_dtype(types_pb2.DataType.Value(spec["dtype"])), name=name)
         for name, spec in json.loads(sys.argv[2]).items()}


class Constant(tf.Module):
    @tf.function(input_signature=[specs])
    def serve(self, features):
        rows = tf.shape(next(iter(features.values())))[0]
        return {"outputs": tf.fill([rows, 1], 0.3)}


module = Constant()
tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.serve})
"""


def served_inputs():
    with urllib.request.urlopen(f"{url}/metadata", timeout=10) as answer:
        signatures = json.load(answer)["metadata"]["signature_def"]["signature_def"]
    return signatures["serving_default"]["inputs"]


def publish_version(model_dir, note):
    """Publishes a SavedModel folder as the next version, as Push does (under Push's serving lock)."""
    from flywheel.store import publish

    with publish.serving_lock(os.path.join(serving_dir, "taxi")):
        version, _ = publish.publish(model_dir, serving_dir, "taxi", {"model_name": "taxi", "note": note})
    return version


constant = os.path.join(work, "constant_model")
subprocess.run([sys.executable, "-c", CONSTANT_MODEL, constant, json.dumps(served_inputs())], check=True,
               capture_output=True, timeout=300)
bad = publish_version(constant, "answers 0.3 for every trip")
some_trips = os.path.join(work, "span-3-slice")
os.makedirs(some_trips)
with open(os.path.join(incoming, "span-3", "data.csv")) as src, open(os.path.join(some_trips, "data.csv"), "w") as dst:
    dst.writelines(itertools.islice(src, 1 + 1000))  # the header and 1,000 trips
print("\n".join(rollout_lines(rollout_start(serving_dir, "taxi", version=bad, mode="canary", percent=50,
                                             reason="a model answering a constant", metadata=metadata))))
wait_until(lambda: bad in served_versions(), "the bad candidate served")
replays.append(flywheel.replay("taxi", some_trips, url, id_column="trip_id"))
print("\n".join(replay_lines(replays[-1])))
wait_until(lambda: logged_rows() >= sum(r.rows_sent for r in replays), "complete request log")
print("answered by (version, role):", answered_since(rollout_status(serving_dir).state["started"]))

# %% [markdown]
# No labels this time: the predictions alone condemn it. Its distribution moved away from stable's, and its
# spread is nothing next to stable's.
# Once the rollback is applied, the same trips sent again are answered by the promoted version alone.

# %%
rolled_back = rollout_analyze(serving_dir, "taxi", logs, report_dir=os.path.join(work, "rollback"),
                              metadata=metadata)
show(rolled_back)
print("\n".join(rollout_lines(rollout_status(serving_dir))))
wait_until(lambda: bad not in served_versions(), "the bad candidate unloaded")
print("serving versions:", served_versions(), "- the same server process:", server.poll() is None)
replays.append(flywheel.replay("taxi", some_trips, url, id_column="trip_id"))
wait_until(lambda: logged_rows() >= sum(r.rows_sent for r in replays), "complete request log")
print("after the rollback, answered by (version, role):", answered_since(rolled_back.state["decisions"][-1]["time"]))
print("failed requests across the release:", sum(r.failed for r in replays), "of",
      sum(r.requests_sent for r in replays))
server.terminate()
server.wait()

# %% [markdown]
# ## Lineage of the model in serving, with its rollout decisions

# %%
print("\n".join(lineage_lines(flywheel.lineage("taxi", out))))
