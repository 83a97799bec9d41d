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
# # flywheel: the taxi pipeline, stage by stage
# This notebook runs flywheel's components one at a time with TFX's `InteractiveContext` on a small
# sample of the Chicago taxi data shipped inside the tfx wheel, and shows what each stage produced:
# statistics, anomalies and the gate's verdict, then a short training and its evaluation.

# %%
import csv
import json
import os
import tempfile

from flywheel import quiet

quiet.quiet_environment(verbose=False)  # before TensorFlow is imported: no warnings buried in the cells

from IPython.display import HTML, display  # noqa: E402
from tfx import v1 as tfx  # noqa: E402
from tfx.orchestration.experimental.interactive.interactive_context import InteractiveContext  # noqa: E402

from flywheel import schemas  # noqa: E402
from flywheel.components.data_gate.component import DataGate  # noqa: E402
from flywheel.components.evaluate.component import Evaluate  # noqa: E402
from flywheel.components.ingest.component import Ingest  # noqa: E402
from flywheel.pipelines.taxi import pipeline as taxi  # noqa: E402
from flywheel.pipelines.taxi.config import Paths, TaxiConfig, shipped_data  # noqa: E402

quiet.install(verbose=False)  # a line per component run, TFX's and Beam's logs at ERROR only

SAMPLE_ROWS = int(os.environ.get("FLYWHEEL_NOTEBOOK_ROWS", "3000"))
TRAIN_STEPS = int(os.environ.get("FLYWHEEL_NOTEBOOK_STEPS", "50"))
workdir = tempfile.mkdtemp(prefix="flywheel-notebook-")

# %% [markdown]
# ## A small sample, laid out as span 1

# %%
os.makedirs(os.path.join(workdir, "data", "span-1"))
with open(shipped_data(), newline="") as src, open(os.path.join(workdir, "data", "span-1", "sample.csv"), "w",
                                                   newline="") as dst:
    writer = csv.writer(dst)
    for i, row in enumerate(csv.reader(src)):
        if i > SAMPLE_ROWS:
            break
        writer.writerow(row)
context = InteractiveContext(pipeline_root=os.path.join(workdir, "pipeline"))
cfg = TaxiConfig(paths=Paths.under(workdir, os.path.join(workdir, "data")), train_steps=TRAIN_STEPS, eval_steps=20)

# %% [markdown]
# ## Ingest: typed from the curated schema, rows that do not parse are quarantined

# %%
schema_gen = tfx.components.ImportSchemaGen(schema_file=schemas.schema_path("taxi"))
context.run(schema_gen)
ingest = Ingest(input_base=cfg.paths.data_root, schema=schema_gen.outputs["schema"])
context.run(ingest)
examples = ingest.outputs["examples"].get()[0]
print({k: examples.get_custom_property(k) for k in ("rows_read", "rows_written", "rows_quarantined", "spans")})

# %% [markdown]
# ## Statistics, anomalies and the data gate
# The gate's report is self-contained HTML: the anomalies against the schema and a chart per feature.

# %%
statistics = tfx.components.StatisticsGen(examples=ingest.outputs["examples"])
context.run(statistics)
validator = tfx.components.ExampleValidator(statistics=statistics.outputs["statistics"],
                                            schema=schema_gen.outputs["schema"])
context.run(validator)
gate = DataGate(anomalies=validator.outputs["anomalies"], statistics=statistics.outputs["statistics"])
context.run(gate)
verdict = gate.outputs["verdict"].get()[0]
print("gate passed:", bool(verdict.get_int_custom_property("passed")))
display(HTML(open(verdict.get_string_custom_property("report")).read()))

# %% [markdown]
# ## Transform and a short training

# %%
stages = taxi.training_stages(cfg, {"ingest": ingest, "schema": schema_gen})
context.run(stages["transform"])
context.run(stages["trainer"])

# %% [markdown]
# ## Evaluation (no model in serving yet: the absolute AUC threshold alone decides)

# %%
evaluate = Evaluate(examples=ingest.outputs["examples"], model=stages["trainer"].outputs["model"],
                    eval_config=taxi.eval_config(cfg), serving_dir=cfg.paths.serving_dir, model_name="taxi",
                    schema=schema_gen.outputs["schema"])
context.run(evaluate)
evaluation = evaluate.outputs["evaluation"].get()[0]
summary = json.load(open(os.path.join(evaluation.uri, "summary.json")))
print("candidate:", {k: round(v, 4) for k, v in summary["candidate"].items()}, "blessed:", summary["blessed"])
display(HTML(open(evaluation.get_string_custom_property("report")).read()))
