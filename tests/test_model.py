"""The taxi model code: pieces that need no pipeline (training itself runs in the end-to-end tests)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.taxi import features, model


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


def test_the_model_still_learns_with_autograph_kept_out_of_keras():
    import tensorflow as tf

    model.keep_autograph_out_of_keras()
    tf.keras.utils.set_random_seed(0)
    n = 400
    rng = np.random.default_rng(0)
    inputs = {features.transformed_name(k): rng.normal(size=(n, 1)).astype("float32")
              for k in features.DENSE_FLOAT_FEATURE_KEYS}
    wide = ([(k, features.BUCKET_COUNT + 1) for k in features.BUCKET_FEATURE_KEYS]
            + list(zip(features.CATEGORICAL_FEATURE_KEYS, features.CATEGORICAL_MAX_VALUES, strict=False))
            + [(k, features.VOCAB_SIZE + features.OOV_SIZE) for k in features.VOCAB_FEATURE_KEYS])
    for key, size in wide:
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
