"""flywheel: TFX components and pipelines that carry a model through its production life.

Import names: `flywheel.components.*` (the components), `flywheel.pipelines.*` (pipeline builders,
runners, the retraining job, lineage), `flywheel.schemas` (curated schemas). The command line
(`flywheel ...`) is a thin adapter over the functions in `flywheel.api`.
"""

import os

# tf.keras means Keras 2 (tf_keras) everywhere in flywheel, so that training,
# export and loading agree whatever was imported first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("tfx-flywheel")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
