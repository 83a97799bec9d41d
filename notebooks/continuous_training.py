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

# %%
import json
import os
import shutil
import subprocess
import sys
import tempfile

from IPython.display import HTML, display

FLYWHEEL = os.path.join(os.path.dirname(sys.executable), "flywheel")
ROWS = os.environ.get("FLYWHEEL_NOTEBOOK_ROWS", "3000")
STEPS = os.environ.get("FLYWHEEL_NOTEBOOK_STEPS", "200")
work = tempfile.mkdtemp(prefix="flywheel-loop-")
incoming, data, out = (os.path.join(work, d) for d in ("incoming", "data", "out"))


def flywheel(*args):
    proc = subprocess.run([FLYWHEEL, *args], capture_output=True, text=True)
    if proc.returncode not in (0, 1):
        raise RuntimeError(proc.stderr)
    return proc.stdout


# %% [markdown]
# ## Three spans of production data, drift from span 3

# %%
print(flywheel("simulate", "taxi", "--out", incoming, "--spans", "3", "--drift-from", "3", "--rows", ROWS))
os.makedirs(data)


def arrive(span):
    shutil.copytree(os.path.join(incoming, f"span-{span}"), os.path.join(data, f"span-{span}"))
    line = flywheel("retrain", "taxi", "--data", data, "--output-dir", out, "--if-drift", "--train-steps", STEPS)
    return json.loads(line.strip().splitlines()[-1])


# %% [markdown]
# ## Span 1: nothing in serving yet, so the job trains and pushes

# %%
first = arrive(1)
print(first)

# %% [markdown]
# ## Span 2: same distribution, no drift, nothing to do (answered without TensorFlow)

# %%
second = arrive(2)
print(second)

# %% [markdown]
# ## Span 3: the monitor's report before the job runs

# %%
baseline = os.path.join(out, "serving", "taxi", str(first["model_version"]), "baseline_profile.json")
shutil.copytree(os.path.join(incoming, "span-3"), os.path.join(work, "peek", "span-3"))
report_dir = os.path.join(work, "drift_report")
verdict = json.loads(flywheel("monitor", "--baseline", baseline, "--current", os.path.join(work, "peek", "span-3"),
                              "--report", report_dir, "--json"))
print("drift detected:", verdict["drift_detected"], "in",
      [name for name, f in verdict["features"].items() if f["drift"]])
display(HTML(open(os.path.join(report_dir, "report.html")).read()))

# %% [markdown]
# ## Span 3 arrives: drift, so the job retrains on the last spans; Push publishes only a blessed model

# %%
third = arrive(3)
print(third)

# %% [markdown]
# ## Lineage of the model in serving

# %%
print(flywheel("lineage", "--output-dir", out))
