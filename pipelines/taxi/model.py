"""The taxi Keras model: a wide-and-deep classifier for "big tipper", trained by TFX Trainer."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
from absl import logging  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402

from flywheel.pipelines.taxi import features  # noqa: E402

WARM_START_WEIGHTS = "keras_weights.h5"


def keep_autograph_out_of_keras() -> None:
    """Stops AutoGraph from re-writing Keras' own source on every trace.

    TensorFlow's AutoGraph leaves the `keras` package alone (a DoNotConvert rule), but with
    TF_USE_LEGACY_KERAS=1 the same Keras code is imported as `tf_keras`, which no rule covers: the
    first `fit` then spends ~20 s parsing and converting Keras internals (measured here: 27 s -> 4.5 s
    for 1000 steps). Adding the same rule for `tf_keras` restores the behaviour Keras was written for.
    """
    from tensorflow.python.autograph.core import config as autograph_config  # TensorFlow: only training needs it

    rules = autograph_config.CONVERSION_RULES
    if not any(isinstance(r, autograph_config.DoNotConvert) and r.matches("tf_keras") for r in rules):
        autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("tf_keras"), *rules)


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
    hidden_units: tuple[int, ...] = (16, 8)
    learning_rate: float = 0.005
    batch_size: int = 40
    seed: int = 0  # weights' initial values and the order training reads examples in

    @classmethod
    def from_custom_config(cls, custom_config: dict | None) -> "Hyperparameters":
        cfg = dict(custom_config or {})
        return cls(hidden_units=tuple(cfg.get("hidden_units", cls.hidden_units)),
                   learning_rate=float(cfg.get("learning_rate", cls.learning_rate)),
                   batch_size=int(cfg.get("batch_size", cls.batch_size)),
                   seed=int(cfg.get("seed", cls.seed)))


def _input_fn(file_pattern, data_accessor, tf_transform_output, batch_size, seed):
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(batch_size=batch_size, label_key=features.LABEL_XF, shuffle_seed=seed),
        tf_transform_output.transformed_metadata.schema).repeat()


def steps_per_execution(train_steps: int, eval_steps: int, most: int = 50) -> int:
    """Steps run inside one tf.function call: the largest divisor of both step counts up to `most`."""
    return next(d for d in range(min(most, train_steps, eval_steps), 0, -1)
                if train_steps % d == 0 and eval_steps % d == 0)


def wide_feature_sizes() -> list[tuple[str, int]]:
    """(raw feature key, number of integer ids) for each one-hot input of the wide part."""
    return ([(k, features.BUCKET_COUNT + 1) for k in features.BUCKET_FEATURE_KEYS]
            + list(zip(features.CATEGORICAL_FEATURE_KEYS, features.CATEGORICAL_MAX_VALUES, strict=False))
            + [(k, features.VOCAB_SIZE + features.OOV_SIZE) for k in features.VOCAB_FEATURE_KEYS])


def build_keras_model(hp: Hyperparameters, steps_per_call: int = 1) -> tf.keras.Model:
    deep_inputs = {features.transformed_name(k): tf.keras.layers.Input(name=features.transformed_name(k), shape=(1,),
                                                                       dtype=tf.float32)
                   for k in features.DENSE_FLOAT_FEATURE_KEYS}
    wide_specs = wide_feature_sizes()
    wide_inputs = {features.transformed_name(k): tf.keras.layers.Input(name=features.transformed_name(k), shape=(1,),
                                                                       dtype="int64")
                   for k, _ in wide_specs}
    deep = tf.keras.layers.concatenate(list(deep_inputs.values()))
    for units in hp.hidden_units:
        deep = tf.keras.layers.Dense(units, activation="relu")(deep)
    wide = tf.keras.layers.concatenate([
        tf.keras.layers.CategoryEncoding(num_tokens=n, output_mode="one_hot")(wide_inputs[features.transformed_name(k)])
        for k, n in wide_specs])
    output = tf.keras.layers.Dense(1, activation="sigmoid")(tf.keras.layers.concatenate([deep, wide]))
    model = tf.keras.Model({**deep_inputs, **wide_inputs}, output)
    model.compile(loss="binary_crossentropy", optimizer=tf.keras.optimizers.Adam(learning_rate=hp.learning_rate),
                  metrics=[tf.keras.metrics.BinaryAccuracy()], steps_per_execution=steps_per_call)
    return model


RAW_SIGNATURE = "serving_default"
EXAMPLES_SIGNATURE = "serving_examples"
TRANSFORM_SIGNATURE = "transform_features"
OUTPUT_KEY = "outputs"
# The raw features the model reads, in the order the raw signature lists them (the label is not one).
RAW_FEATURE_KEYS = (features.DENSE_FLOAT_FEATURE_KEYS + features.BUCKET_FEATURE_KEYS
                    + features.CATEGORICAL_FEATURE_KEYS + features.VOCAB_FEATURE_KEYS)


def raw_input_specs(raw_feature_spec: dict) -> dict[str, tf.TensorSpec]:
    """The raw signature's inputs: one [None] tensor per model feature, typed as the schema types it (no label)."""
    return {key: tf.TensorSpec(shape=[None], dtype=raw_feature_spec[key].dtype, name=key)
            for key in RAW_FEATURE_KEYS}


def _as_parsed(raw_feature_spec: dict, key: str, column: tf.Tensor):
    """A [None] column in the form tf.io.parse_example gives the Transform layer: dense [None, 1] for a
    FixedLenFeature, a SparseTensor with one value per row for a VarLenFeature."""
    if isinstance(raw_feature_spec[key], tf.io.FixedLenFeature):
        return tf.expand_dims(column, 1)
    rows = tf.shape(column, out_type=tf.int64)[0]
    indices = tf.stack([tf.range(rows), tf.zeros([rows], tf.int64)], axis=1)
    return tf.SparseTensor(indices, column, tf.stack([rows, tf.constant(1, tf.int64)]))


def _serving_signatures(model, tf_transform_output):
    """serving_default: the nine raw features by name (what JSON clients send); serving_examples: serialized
    tf.Examples (TFMA, batch inference); transform_features: the Transform layer alone (TFMA's preprocessing)."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    input_specs = raw_input_specs(raw_spec)

    @tf.function(input_signature=[input_specs])
    def serve_raw_fn(inputs):
        parsed = {key: _as_parsed(raw_spec, key, inputs[key]) for key in RAW_FEATURE_KEYS}
        return {OUTPUT_KEY: model(model.tft_layer(parsed))}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def serve_tf_examples_fn(serialized):
        example_spec = {key: raw_spec[key] for key in RAW_FEATURE_KEYS}
        transformed = model.tft_layer(tf.io.parse_example(serialized, example_spec))
        return {OUTPUT_KEY: model(transformed)}

    @tf.function(input_signature=[tf.TensorSpec(shape=[None], dtype=tf.string, name="examples")])
    def transform_features_fn(serialized):
        raw = tf.io.parse_example(serialized, raw_spec)
        return model.tft_layer(raw)

    return {RAW_SIGNATURE: serve_raw_fn.get_concrete_function(),
            EXAMPLES_SIGNATURE: serve_tf_examples_fn, TRANSFORM_SIGNATURE: transform_features_fn}


def _warm_start(model, fn_args) -> None:
    """Loads the serving model's weights when its Transform vocabularies match this run's."""
    base = (fn_args.custom_config or {}).get("warm_start_from")
    if not base:
        return
    weights = os.path.join(base, WARM_START_WEIGHTS)
    base_vocab = os.path.join(base, "assets_vocab")
    new_vocab = os.path.join(fn_args.transform_output, "transform_fn", "assets")
    if not tf.io.gfile.exists(weights):
        logging.warning("warm start: no %s in %s; training from scratch", WARM_START_WEIGHTS, base)
        return
    for key in features.VOCAB_FEATURE_KEYS:
        old, new = os.path.join(base_vocab, key), os.path.join(new_vocab, key)
        if not (tf.io.gfile.exists(old) and tf.io.gfile.exists(new)) or \
                tf.io.gfile.GFile(old, "rb").read() != tf.io.gfile.GFile(new, "rb").read():
            logging.warning("warm start: vocabulary %r changed since the serving model; training from scratch", key)
            return
    model.load_weights(weights)
    logging.info("warm start: loaded weights from %s", weights)


def run_fn(fn_args):
    """Entry point called by TFX Trainer: build, (optionally warm start,) fit, export with signatures."""
    keep_autograph_out_of_keras()
    hp = Hyperparameters.from_custom_config(fn_args.custom_config)
    tf.keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _input_fn(fn_args.train_files, fn_args.data_accessor, tf_transform_output, hp.batch_size, hp.seed)
    evaluation = _input_fn(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, hp.batch_size, hp.seed)
    model = build_keras_model(hp, steps_per_execution(fn_args.train_steps, fn_args.eval_steps))
    _warm_start(model, fn_args)
    model.fit(train, steps_per_epoch=fn_args.train_steps, validation_data=evaluation,
              validation_steps=fn_args.eval_steps,
              callbacks=[tf.keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch")],
              verbose=0)
    tf.saved_model.save(model, fn_args.serving_model_dir, signatures=_serving_signatures(model, tf_transform_output))
    model.save_weights(os.path.join(fn_args.serving_model_dir, WARM_START_WEIGHTS))
    vocab_dir = os.path.join(fn_args.serving_model_dir, "assets_vocab")
    tf.io.gfile.makedirs(vocab_dir)
    for key in features.VOCAB_FEATURE_KEYS:
        tf.io.gfile.copy(os.path.join(fn_args.transform_output, "transform_fn", "assets", key),
                         os.path.join(vocab_dir, key), overwrite=True)
