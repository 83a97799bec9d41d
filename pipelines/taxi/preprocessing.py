"""tf.Transform preprocessing for the taxi model."""

import tensorflow as tf
import tensorflow_transform as tft

from flywheel.pipelines.taxi import features


def _fill_in_missing(x):
    """Densifies a rank-2 SparseTensor (at most one value per row), filling gaps with '' or 0."""
    if not isinstance(x, tf.sparse.SparseTensor):
        return tf.squeeze(x, axis=1) if x.shape.rank == 2 else x
    default_value = "" if x.dtype == tf.string else 0
    dense = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value)
    return tf.squeeze(dense, axis=1)


def preprocessing_fn(inputs):
    """Entry point called by TFX Transform: z-scores, buckets, vocabularies and the label."""
    outputs = {}
    for key in features.DENSE_FLOAT_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = tft.scale_to_z_score(
            tf.cast(_fill_in_missing(inputs[key]), tf.float32))
    for key in features.BUCKET_FEATURE_KEYS:
        boundaries = tf.constant([list(features.BUCKET_BOUNDARIES[key])], dtype=tf.float32)
        outputs[features.transformed_name(key)] = tft.apply_buckets(
            tf.cast(_fill_in_missing(inputs[key]), tf.float32), boundaries)
    for key in features.CATEGORICAL_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = _fill_in_missing(inputs[key])
    for key in features.VOCAB_FEATURE_KEYS:
        outputs[features.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            _fill_in_missing(inputs[key]), top_k=features.VOCAB_SIZE, num_oov_buckets=features.OOV_SIZE,
            vocab_filename=key)
    fare = _fill_in_missing(inputs[features.FARE_KEY])
    tips = _fill_in_missing(inputs[features.LABEL_KEY])
    outputs[features.LABEL_XF] = tf.where(
        tf.math.is_nan(fare), tf.zeros_like(fare, dtype=tf.int64),
        tf.cast(tf.greater(tips, fare * features.BIG_TIP_SHARE), tf.int64))
    return outputs
