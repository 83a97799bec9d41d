"""The examples signature is found by inspecting the SavedModel, whatever it is called."""

from __future__ import annotations

import pytest
import tensorflow as tf

from flywheel.batch import model_version


class _Model(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def score_examples(self, serialized):
        return {"outputs": tf.reshape(tf.cast(tf.strings.length(serialized), tf.float32), [-1, 1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform(self, serialized):
        n = tf.strings.length(serialized)
        return {"a_xf": n, "b_xf": n}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="fare"),
                                  tf.TensorSpec([None], tf.string, name="payment_type")])
    def raw(self, fare, payment_type):
        return {"outputs": fare}


def _save(path, **signatures) -> str:
    model = _Model()
    tf.saved_model.save(model, str(path), signatures={name: getattr(model, fn) for name, fn in signatures.items()})
    return str(path)


def test_the_examples_signature_is_found_by_its_input_not_its_name(tmp_path):
    after = _save(tmp_path / "after", serving_default="raw", serving_examples="score_examples",
                  transform_features="transform")
    assert model_version.examples_signature(after) == ("serving_examples", "outputs")
    before = _save(tmp_path / "before", serving_default="score_examples", transform_features="transform")
    assert model_version.examples_signature(before) == ("serving_default", "outputs")


def test_no_examples_signature_names_the_signatures_there(tmp_path):
    path = _save(tmp_path / "m", serving_default="raw", transform_features="transform")
    with pytest.raises(model_version.PredictError, match=r"found no signature; signatures: serving_default\(fare, "
                                                  r"payment_type\) -> outputs; transform_features\(examples\)"):
        model_version.examples_signature(path)


@pytest.mark.slow  # a child process loading TensorFlow
def test_the_signature_read_in_a_child_process_is_the_same_and_so_are_its_errors(tmp_path):
    path = _save(tmp_path / "m", serving_default="raw", serving_examples="score_examples")
    expected = ("serving_examples", "outputs")
    assert model_version.examples_signature_apart(path) == model_version.examples_signature(path) == expected
    bad = _save(tmp_path / "bad", serving_default="raw")
    with pytest.raises(model_version.PredictError,
                       match=rf"^predict: {bad}: expected one signature taking a string tensor "
                             r"'examples'.*found no signature; signatures: serving_default"):
        model_version.examples_signature_apart(bad)


def test_the_version_in_serving_is_the_rollouts_stable_one_once_a_rollout_state_exists(tmp_path):
    from flywheel.rollout import store
    from tests.rollout.conftest import add_version

    model = _save(tmp_path / "m", serving_default="raw", serving_examples="score_examples")
    folder = str(tmp_path / "serving")
    add_version(folder, model, 1)
    assert model_version.resolve(folder, "taxi").version == 1
    store.pin(folder, "taxi")
    add_version(folder, model, 2)
    assert model_version.resolve(folder, "taxi").version == 1, "a version pushed after the pin waits for a rollout"
    assert model_version.resolve(folder, "taxi", 2).version == 2
