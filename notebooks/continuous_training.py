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
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from flywheel.pipelines import quiet

quiet.quiet_environment(verbose=False)  # before TensorFlow is imported: no warnings buried in the cells

from IPython.display import HTML, display  # noqa: E402

import flywheel  # noqa: E402
from flywheel import schemas  # noqa: E402

ROWS = int(os.environ.get("FLYWHEEL_NOTEBOOK_ROWS", "3000"))
STEPS = int(os.environ.get("FLYWHEEL_NOTEBOOK_STEPS", "200"))
work = tempfile.mkdtemp(prefix="flywheel-loop-")
incoming, data, out = (os.path.join(work, d) for d in ("incoming", "data", "out"))

# %% [markdown]
# ## Three spans of production data, drift from span 3

# %%
print("\n".join(flywheel.simulate("taxi", incoming, spans=3, drift_from=3, rows=ROWS).lines()))
os.makedirs(data)


def arrive(span):
    """A span lands; the scheduled job runs (`flywheel retrain taxi --if-drift` calls the same function)."""
    shutil.copytree(os.path.join(incoming, f"span-{span}"), os.path.join(data, f"span-{span}"))
    result = flywheel.retrain("taxi", data, out, if_drift=True, train_steps=STEPS)
    shown = ("span", "drift_detected", "retrained", "blessed", "pushed", "model_version", "drift_reason")
    return {k: result.to_dict()[k] for k in shown}


# %% [markdown]
# ## Span 1: nothing in serving yet (no baseline, which is not drift), so the job trains and pushes

# %%
first = arrive(1)
print(first)

# %% [markdown]
# ## Span 2: same distribution, no drift, nothing to do (answered without TensorFlow)

# %%
second = arrive(2)
print(second)

# %% [markdown]
# ## Serving: version 1 answers requests, and every request is logged
# `flywheel serve` speaks TF Serving's REST API; `--log-dir` writes each request's features, prediction
# and latency as Parquet under `span-N/` (N = the UTC day), the layout Ingest and the monitor read.

# %%
serving_dir, logs = os.path.join(out, "serving"), os.path.join(work, "request_logs")
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
server = subprocess.Popen([sys.executable, "-m", "flywheel.cli", "serve", "--serving-dir", serving_dir,
                           "--port", str(port), "--log-dir", logs], stderr=subprocess.DEVNULL)
url = f"http://127.0.0.1:{port}/v1/models/taxi"


def served_versions():
    """The versions the running server reports AVAILABLE (GET /v1/models/taxi, as TF Serving answers it)."""
    import json

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
print("\n".join(sent.lines()))


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
baseline = os.path.join(serving_dir, "taxi", str(first["model_version"]), "baseline_profile.json")
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
print("\n".join(flywheel.logs_join(logs, os.path.join(incoming, "span-3"), "trip_id", data, span=3).lines()))
print("spans:", sorted(os.listdir(data)))

# %% [markdown]
# ## The job retrains on what production sent; Push publishes only a blessed model

# %%
result = flywheel.retrain("taxi", data, out, if_drift=True, train_steps=STEPS)
third = {k: result.to_dict()[k] for k in ("window", "drift_detected", "retrained", "blessed", "pushed",
                                          "model_version")}
print(third)

# %% [markdown]
# ## The running server picks the new version up, without a restart

# %%
if third["pushed"]:
    wait_until(lambda: third["model_version"] in served_versions(), "new version served")
print("serving versions:", served_versions(), "- the same server process:", server.poll() is None)
server.terminate()
server.wait()

# %% [markdown]
# ## Lineage of the model in serving

# %%
print("\n".join(flywheel.lineage("taxi", out).lines()))
