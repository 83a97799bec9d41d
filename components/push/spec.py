"""Push's keys (they are also the @component parameter names).

The PushedModel's custom properties (`pushed`, `pushed_version`, `pushed_destination`, `reason`) are named in
`flywheel.metadata.artifacts`, where the libraries that read them back find them too.
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

PUSHED_REASON = "blessed and different from serving"
