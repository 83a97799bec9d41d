"""Building the taxi pipeline: configuration mistakes fail at construction, with a clear message."""

from __future__ import annotations

import pytest
from tfx.components import CsvExampleGen

from flywheel.components.monitor import spec as monitor_spec
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
    profile = nodes["Ingest"].outputs[monitor_spec.PROFILE_KEY]
    assert profile.type is monitor_spec.DataProfile
    assert nodes["DriftMonitor"].inputs["profile"] is profile
    assert nodes["Push"].inputs["profile"] is profile
