"""Compiles the taxi pipeline for Kubeflow Pipelines (v2) with KubeflowV2DagRunner.

The data location and serving folder are pipeline parameters (`data-root`, `serving-dir`),
set per run in the KFP UI; nothing of the compiling machine's paths goes into the spec.
A `.yaml` output is the bare PipelineSpec the open-source KFP UI uploads; `.json` is a
Vertex AI PipelineJob.
"""

from __future__ import annotations

import dataclasses
import os

from flywheel.pipelines.taxi.config import Paths, TaxiConfig

DEFAULT_IMAGE = "ghcr.io/flywheel-ml/flywheel-taxi:0.1.0"
IMAGE_ROOT = "/pipeline"  # where kubeflow/Dockerfile puts this repository inside the image
DEFAULT_DATA_ROOT = "/mnt/data/taxi"
DEFAULT_SERVING_DIR = "/mnt/serving"


def kubeflow_config(pipeline_root: str = "") -> TaxiConfig:
    from tfx import v1 as tfx

    data_root = tfx.dsl.experimental.RuntimeParameter(name="data-root", ptype=str, default=DEFAULT_DATA_ROOT)
    serving_dir = tfx.dsl.experimental.RuntimeParameter(name="serving-dir", ptype=str, default=DEFAULT_SERVING_DIR)
    paths = Paths(data_root=data_root, output_dir=pipeline_root, pipeline_root=pipeline_root, serving_dir=serving_dir)
    return TaxiConfig(paths=paths, schema_path=os.path.join(IMAGE_ROOT, "schemas", "taxi", "schema.pbtxt"))


def compile_pipeline(output: str, image: str | None = None, pipeline_root: str = "",
                     cfg: TaxiConfig | None = None) -> str:
    from tfx import v1 as tfx

    from flywheel.pipelines.taxi.pipeline import create_pipeline

    cfg = cfg or kubeflow_config(pipeline_root)
    cfg = dataclasses.replace(cfg, beam_pipeline_args=("--direct_running_mode=multi_processing",
                                                       "--direct_num_workers=0"))
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image or DEFAULT_IMAGE,
                                                                     use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(output), output_filename=os.path.basename(output))
    if os.path.exists(output):
        os.remove(output)
    runner.run(create_pipeline(cfg))
    return output


if __name__ == "__main__":
    compile_pipeline(os.path.join(os.path.dirname(__file__), "..", "..", "kubeflow", "taxi_pipeline.yaml"))
