"""The taxi model code: pieces that need no pipeline (training itself runs in the end-to-end tests)."""

from __future__ import annotations

import numpy as np
import pytest

from flywheel.pipelines.taxi import features, model


def test_keras_internals_are_left_to_tensorflow_not_autograph():
    import tf_keras
    from tensorflow.python.autograph.core import config as autograph_config
    from tensorflow.python.autograph.impl import conversion

    model.keep_autograph_out_of_keras()
    model.keep_autograph_out_of_keras()
    assert conversion.is_allowlisted(tf_keras.layers.Dense.call)
    assert not conversion.is_allowlisted(model.run_fn)
    rules = [r for r in autograph_config.CONVERSION_RULES if str(r) == "DoNotConvert rule for tf_keras"]
    assert len(rules) == 1


@pytest.mark.slow  # trains the Keras model for five epochs
def test_the_model_still_learns_with_autograph_kept_out_of_keras():
    import tensorflow as tf

    model.keep_autograph_out_of_keras()
    tf.keras.utils.set_random_seed(0)
    n = 400
    rng = np.random.default_rng(0)
    inputs = {features.transformed_name(k): rng.normal(size=(n, 1)).astype("float32")
              for k in features.DENSE_FLOAT_FEATURE_KEYS}
    for key, size in model.wide_feature_sizes():
        inputs[features.transformed_name(key)] = rng.integers(0, size, size=(n, 1))
    first = inputs[features.transformed_name(features.DENSE_FLOAT_FEATURE_KEYS[0])]
    labels = (first > 0).astype("float32")
    net = model.build_keras_model(model.Hyperparameters(learning_rate=0.05), steps_per_call=5)
    history = net.fit(inputs, labels, batch_size=40, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.7
    assert history.history["binary_accuracy"][-1] > 0.9


@pytest.mark.parametrize("train,evaluation,expected", [(1000, 100, 50), (150, 100, 50), (7, 3, 1), (30, 20, 10)])
def test_steps_per_execution_divides_both_step_counts(train, evaluation, expected):
    assert model.steps_per_execution(train, evaluation) == expected


def _served_model(tmp_path, vocab: bytes):
    """A 'serving' folder as run_fn leaves it: Keras weights plus the Transform vocabularies."""
    served = tmp_path / "served"
    (served / "assets_vocab").mkdir(parents=True)
    net = model.build_keras_model(model.Hyperparameters())
    net.save_weights(str(served / model.WARM_START_WEIGHTS))
    (served / "assets_vocab" / "payment_type").write_bytes(vocab)
    return served, net


def _transform_output(tmp_path, vocab: bytes):
    out = tmp_path / "transform"
    (out / "transform_fn" / "assets").mkdir(parents=True)
    (out / "transform_fn" / "assets" / "payment_type").write_bytes(vocab)
    return out


def _same_weights(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights(), strict=True))


@pytest.mark.parametrize("new_vocab,loads", [(b"Cash\nCredit Card\n", True), (b"Credit Card\nCash\n", False)])
def test_warm_start_loads_serving_weights_only_when_the_vocabularies_match(tmp_path, new_vocab, loads):
    from types import SimpleNamespace

    served, old = _served_model(tmp_path, b"Cash\nCredit Card\n")
    fresh = model.build_keras_model(model.Hyperparameters())
    assert not _same_weights(fresh, old)
    fn_args = SimpleNamespace(custom_config={"warm_start_from": str(served)},
                              transform_output=str(_transform_output(tmp_path, new_vocab)))
    model._warm_start(fresh, fn_args)
    assert _same_weights(fresh, old) is loads


def test_warm_start_source_is_the_latest_serving_version_and_part_of_the_trainer_config(tmp_path):
    import json

    from flywheel.pipelines.taxi import pipeline
    from flywheel.pipelines.taxi.config import Paths, TaxiConfig

    paths = Paths.under(str(tmp_path / "out"), data_root=str(tmp_path / "data"))
    for version in (5, 12):
        folder = tmp_path / "out" / "serving" / "taxi" / str(version)
        folder.mkdir(parents=True)
        (folder / "push.json").write_text(json.dumps({"version": version}))
        (folder / "saved_model.pb").write_bytes(b"")
    assert pipeline.warm_start_source(TaxiConfig(paths=paths)) is None
    cfg = TaxiConfig(paths=paths, warm_start=True)
    assert pipeline.warm_start_source(cfg) == str(tmp_path / "out" / "serving" / "taxi" / "12")
    trainer = pipeline.training_stages(cfg, pipeline.data_stages(cfg))["trainer"]
    assert json.loads(trainer.exec_properties["custom_config"])["warm_start_from"].endswith("/taxi/12")


def test_an_edited_preprocessing_or_model_module_changes_the_cache_key(tmp_path, monkeypatch):
    import json

    from flywheel.pipelines.taxi import pipeline
    from flywheel.pipelines.taxi.config import Paths, TaxiConfig

    package = tmp_path / "edited_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "prep.py").write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = pipeline.code_digest("edited_pkg.prep")
    assert pipeline.code_digest("edited_pkg.prep") == before
    (package / "prep.py").write_text("def preprocessing_fn(inputs):\n    return dict(inputs)\n")
    assert pipeline.code_digest("edited_pkg.prep") != before
    with pytest.raises(ModuleNotFoundError, match="edited_pkg.missing"):
        pipeline.code_digest("edited_pkg.missing")

    cfg = TaxiConfig(paths=Paths.under(str(tmp_path / "out"), data_root=str(tmp_path / "data")))
    stages = pipeline.training_stages(cfg, pipeline.data_stages(cfg))
    transform_config = json.loads(stages["transform"].exec_properties["custom_config"])
    trainer_config = json.loads(stages["trainer"].exec_properties["custom_config"])
    assert transform_config["code_digest"] == pipeline.code_digest("flywheel.pipelines.taxi.preprocessing",
                                                                   "flywheel.pipelines.taxi.features")
    assert trainer_config["code_digest"] == pipeline.code_digest("flywheel.pipelines.taxi.model",
                                                                 "flywheel.pipelines.taxi.features")


ISSUE_ROW = {"trip_miles": 1.2, "fare": 8.5, "trip_seconds": 600, "pickup_latitude": 41.9, "pickup_longitude": -87.6,
             "trip_start_hour": 14, "trip_start_day": 3, "trip_start_month": 5, "payment_type": "Cash"}


@pytest.fixture(scope="module")
def exported(taxi_runs):
    """The SavedModel the taxi runs' Trainer exported and Push published (the checked-in runs, tests/fixtures)."""
    import os

    import tensorflow as tf

    from flywheel.store import layout

    return tf.saved_model.load(layout.latest(os.path.join(taxi_runs, "serving"), "taxi").path)


def test_serving_default_takes_the_nine_raw_features_by_name_as_the_schema_types_them(exported):
    import tensorflow as tf

    specs = exported.signatures[model.RAW_SIGNATURE].structured_input_signature[1]
    assert sorted(specs) == sorted(ISSUE_ROW) and features.LABEL_KEY not in specs
    assert {k: s.dtype for k, s in specs.items()} == {
        **{k: tf.float32 for k in ("trip_miles", "fare", "pickup_latitude", "pickup_longitude")},
        **{k: tf.int64 for k in ("trip_seconds", "trip_start_hour", "trip_start_day", "trip_start_month")},
        "payment_type": tf.string}
    assert all(s.shape.as_list() == [None] for s in specs.values())
    assert set(exported.signatures) >= {model.RAW_SIGNATURE, model.EXAMPLES_SIGNATURE, model.TRANSFORM_SIGNATURE}


def test_the_raw_and_examples_signatures_give_the_same_prediction_for_the_issue_row(exported):
    import tensorflow as tf

    specs = exported.signatures[model.RAW_SIGNATURE].structured_input_signature[1]
    raw = exported.signatures[model.RAW_SIGNATURE](
        **{k: tf.constant([v], dtype=specs[k].dtype) for k, v in ISSUE_ROW.items()})[model.OUTPUT_KEY].numpy()
    feature = {}
    for key, value in ISSUE_ROW.items():
        if specs[key].dtype == tf.string:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
        elif specs[key].dtype == tf.int64:
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    example = tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
    serialized = exported.signatures[model.EXAMPLES_SIGNATURE](examples=tf.constant([example]))[model.OUTPUT_KEY]
    assert raw.shape == (1, 1) and 0.0 <= raw[0, 0] <= 1.0
    np.testing.assert_allclose(raw, serialized.numpy(), atol=1e-6)
    other = dict(ISSUE_ROW, fare=80.0, trip_miles=20.0, payment_type="Credit Card")
    changed = exported.signatures[model.RAW_SIGNATURE](
        **{k: tf.constant([v], dtype=specs[k].dtype) for k, v in other.items()})[model.OUTPUT_KEY].numpy()
    assert not np.allclose(raw, changed), "the prediction does not depend on the features sent"
