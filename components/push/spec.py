"""Push's keys (they are also the @component parameter names) and custom properties.

The PushedModel's `pushed` (int 1/0), `pushed_destination` (string) and `pushed_version` (string) are
named and typed as the stock TFX Pusher records them, so tools that read a stock push read ours.
"""

MODEL_KEY = "model"
BLESSING_KEY = "model_blessing"
EVALUATION_KEY = "evaluation"
EXAMPLES_KEY = "examples"
PROFILE_KEY = "profile"
PUSHED_MODEL_KEY = "pushed_model"
SERVING_DIR_KEY = "serving_dir"
MODEL_NAME_KEY = "model_name"
NUM_CHECK_EXAMPLES_KEY = "num_check_examples"
NUM_PROFILE_EXAMPLES_KEY = "num_profile_examples"
SERVING_VERSION_KEY = "serving_version"

PUSHED = "pushed"
PUSHED_VERSION = "pushed_version"
PUSHED_DESTINATION = "pushed_destination"
REASON = "reason"
PUSHED_REASON = "blessed and different from serving"
