"""Building the taxi pipeline: configuration mistakes fail at construction, with a clear message."""

from __future__ import annotations

import pytest
from tfx.components import CsvExampleGen

from flywheel.components import monitor
from flywheel.pipelines.taxi import pipeline
from flywheel.pipelines.taxi.config import Paths, TaxiConfig


def test_stock_example_gen_in_place_of_ingest_fails_at_build_time(tmp_path):
    cfg = TaxiConfig(paths=Paths.under(str(tmp_path)), monitor_baseline="")
    data = pipeline.data_stages(cfg)
    data["ingest"] = CsvExampleGen(input_base=str(tmp_path))
    with pytest.raises(ValueError, match=r"DriftMonitor: expected the ingestion component to have a 'profile' "
                                         r"output of type flywheel\.DataProfile, but CsvExampleGen"):
        pipeline.monitor_stages(cfg, data)
    training = pipeline.training_stages(cfg, data)
    with pytest.raises(ValueError, match=r"Push: .*CsvExampleGen .* has outputs \['examples'\]"):
        pipeline.release_stages(cfg, data, training)


def test_ingest_declares_its_profile_as_an_output_channel(tmp_path):
    cfg = TaxiConfig(paths=Paths.under(str(tmp_path)), monitor_baseline="", retrain_if_drift=True)
    built = pipeline.create_pipeline(cfg)
    nodes = {n.id: n for n in built.components}
    profile = nodes["Ingest"].outputs[monitor.spec.PROFILE_KEY]
    assert profile.type is monitor.spec.DataProfile
    assert nodes["DriftMonitor"].inputs["profile"] is profile
    assert nodes["Push"].inputs["profile"] is profile


def test_under_continuous_training_decide_runs_every_time_and_guards_the_rest(tmp_path):
    """Local and Beam runs compile the pipeline with caching off for Decide alone; every other node is under
    its condition and reads what it decided."""
    from flywheel.pipelines.taxi import local_runner
    from tests import tiny_runs

    cfg = tiny_runs.config(str(tmp_path / "out"), str(tmp_path), continuous_training=True)
    pipeline = local_runner.build(cfg)
    ids = [c.id for c in pipeline.components]
    assert ids[0] == "Decide" and "DriftMonitor" not in ids
    ir = local_runner.compile_ir(pipeline)
    caching = {n.pipeline_node.node_info.id: n.pipeline_node.execution_options.caching_options.enable_cache
               for n in ir.nodes}
    assert caching.pop("Decide") is False and caching and all(caching.values())
    guarded = {n.pipeline_node.node_info.id for n in ir.nodes if len(n.pipeline_node.inputs.conditionals) == 2}
    assert guarded == {"Transform", "Trainer", "Evaluate", "Push"}
    ingest = next(c for c in pipeline.components if c.id == "Ingest")
    # locally Ingest's driver fingerprints the data: Decide's outputs would make every run a cache miss
    assert ingest.exec_properties["span"] == -1 and ingest.exec_properties.get("expected_fingerprint") is None
    plain = local_runner.compile_ir(local_runner.build(tiny_runs.config(str(tmp_path / "o2"), str(tmp_path))))
    assert all(n.pipeline_node.execution_options.caching_options.enable_cache for n in plain.nodes)


def test_pushs_cache_key_holds_what_serves_so_an_emptied_serving_folder_is_pushed_to_again(tmp_path):
    """The end-to-end rerun (tests/e2e/test_pipeline_runs.py) empties serving while the gate also changes, so Push
    reruns there anyway; here, the part of Push's cache key that alone makes it rerun when its version is gone."""
    cfg = TaxiConfig(paths=Paths.under(str(tmp_path)), monitor_baseline="")
    version = tmp_path / "serving" / cfg.model_name / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")

    def push_key() -> int:
        nodes = {n.id: n for n in pipeline.create_pipeline(cfg).components}
        return nodes["Push"].exec_properties["serving_version"]

    assert push_key() == 1
    (version / "saved_model.pb").unlink()
    assert push_key() == 0
