"""flywheel's TFX components: one package per component."""

import os

# tf.keras means Keras 2 (tf_keras) everywhere in flywheel, so that training,
# export and loading agree whatever was imported first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
