"""The taxi Trainer is reproducible: the stock TFX Trainer executor, run twice on the tiny run's transformed
examples with the pipeline's own custom_config, trains the same weights with the same seed and other weights
with another (unseeded, two trainings on the same examples came out with AUCs from 0.45 to 0.83)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from tfx.components.trainer import executor as trainer_executor
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from flywheel.metadata import run_record
from flywheel.pipelines.taxi import model, pipeline
from tests import tiny_runs


@pytest.fixture(scope="module")
def transformed(tmp_path_factory) -> dict:
    out = tiny_runs.two_runs(str(tmp_path_factory.mktemp("tiny")))
    records = run_record.latest_run(os.path.join(out, "metadata.sqlite"), "taxi")
    return {"examples": records["Transform"].output("transformed_examples"),
            "graph": records["Transform"].output("transform_graph")["uri"],
            "schema": records["ImportSchemaGen"].output("schema")["uri"]}


def _train(transformed: dict, folder: str, seed: int) -> list[np.ndarray]:
    """The stock Trainer executor with the taxi pipeline's custom_config (seed replaced); the trained weights."""
    examples = standard_artifacts.Examples()
    examples.uri = transformed["examples"]["uri"]
    examples.split_names = transformed["examples"]["split_names"]
    graph, schema = standard_artifacts.TransformGraph(), standard_artifacts.Schema()
    graph.uri, schema.uri = transformed["graph"], transformed["schema"]
    trained, run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    trained.uri, run.uri = os.path.join(folder, "model"), os.path.join(folder, "model_run")
    cfg = tiny_runs.config(folder, folder, seed=seed)
    trainer = pipeline.create_pipeline(cfg).components
    (custom_config,) = [c.exec_properties["custom_config"] for c in trainer if c.id == "Trainer"]
    assert json.loads(custom_config)["seed"] == seed
    trainer_executor.GenericExecutor().Do(
        {"examples": [examples], "transform_graph": [graph], "schema": [schema]},
        {"model": [trained], "model_run": [run]},
        {"run_fn": pipeline.RUN_FN, "custom_config": custom_config,
         "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(num_steps=cfg.train_steps)),
         "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(num_steps=cfg.eval_steps))})
    net = model.build_keras_model(model.Hyperparameters())
    net.load_weights(os.path.join(trained.uri, "Format-Serving", model.WARM_START_WEIGHTS))
    return net.get_weights()


def test_the_same_seed_trains_the_same_weights_and_another_seed_others(transformed, tmp_path):
    first = _train(transformed, str(tmp_path / "a"), seed=0)
    again = _train(transformed, str(tmp_path / "b"), seed=0)
    other = _train(transformed, str(tmp_path / "c"), seed=1)
    assert first and len(first) == len(again) == len(other)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True)), "seed 0 twice: other weights"
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True)), "seeds 0 and 1: the same weights"
