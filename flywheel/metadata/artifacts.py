"""The names flywheel's pushed models carry in ML-Metadata, for the libraries that read them back.

Push records them (`flywheel.components.push.executor`); lineage (`flywheel.metadata.lineage`), the rollout
records (`flywheel.rollout.mlmd`) and the run summaries find a published version by them. Named and typed as the
stock TFX Pusher records them, so tools that read a stock push read ours. Plain names: importing this module
imports nothing else.
"""

PUSHED_MODEL_TYPE = "PushedModel"  # TFX's standard artifact type of a push's output
PUSHED = "pushed"  # int: 1 when the model was published, else 0
PUSHED_VERSION = "pushed_version"  # string: the version number it was published as
PUSHED_DESTINATION = "pushed_destination"  # string: the version's folder
PUSH_REASON = "reason"  # string: why it was or was not published (flywheel's own)
