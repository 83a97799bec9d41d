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
import os
import shutil
import tempfile

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
# ## Span 3: the monitor's report before the job runs

# %%
baseline = os.path.join(out, "serving", "taxi", str(first["model_version"]), "baseline_profile.json")
report_dir = os.path.join(work, "drift_report")
verdict = flywheel.monitor(baseline, os.path.join(incoming, "span-3"), schema=schemas.schema_path("taxi"),
                           report_dir=report_dir)
print("drift detected:", verdict.drift_detected, "in", verdict.drifted)
display(HTML(open(verdict.report).read()))

# %% [markdown]
# ## Span 3 arrives: drift, so the job retrains on the last spans; Push publishes only a blessed model

# %%
third = arrive(3)
print(third)

# %% [markdown]
# ## Lineage of the model in serving

# %%
print("\n".join(flywheel.lineage("taxi", out).lines()))
