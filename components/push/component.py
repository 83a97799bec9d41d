"""Push: the thin component. An unblessed or unchanged model is not pushed; the execution still succeeds."""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from flywheel.components.monitor.spec import DataProfile
from flywheel.components.push import executor


@component
def Push(  # noqa: N802 - TFX component names are classes
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    examples: InputArtifact[standard_artifacts.Examples],
    profile: InputArtifact[DataProfile],
    pushed_model: OutputArtifact[standard_artifacts.PushedModel],
    serving_dir: Parameter[str],
    model_name: Parameter[str],
    num_check_examples: Parameter[int] = 8,
    num_profile_examples: Parameter[int] = 10_000,
    serving_version: Parameter[int] = -1,
) -> None:
    """Publishes a blessed model to `<serving_dir>/<model_name>/<version>/` with push.json.

    Decide and publish hold the serving folder's lock; versions are claimed exclusively; a model blessed
    against an older serving version than the latest is not published (see components/push/README.md).

    Args:
      model: the trained model (Format-Serving SavedModel).
      model_blessing: Evaluate's blessing; an unblessed model is not pushed (the execution still succeeds).
      evaluation: Evaluate's metrics, copied into push.json.
      examples: the training examples: eval examples check the serving signature; fingerprint and spans
        go into push.json.
      profile: Ingest's per-span profiles (flywheel.DataProfile), merged into the model's
        `baseline_profile.json`, which the drift monitor compares production data with.
      serving_dir, model_name: the TF Serving layout `<serving_dir>/<model_name>/<version>/`; either may be a
        RuntimeParameter (a Kubeflow run parameter, as `serving-dir` and `model-name` in the compiled taxi spec).
      num_check_examples: how many eval examples the serving signature must answer before publishing.
      num_profile_examples: how many eval examples the model scores for the `prediction` column of
        `baseline_profile.json`, which the monitor compares a request log's predictions with (0: none).
      serving_version: the latest version in serving when the pipeline was built (0: none, -1: not known,
        e.g. a Kubeflow runtime parameter). Only the cache key uses it, so a serving folder that changed or
        was emptied since is never answered by a cached push; the push itself reads the folder.

    Outputs:
      pushed_model: custom properties as the stock Pusher sets them, `pushed` (int 1/0), `pushed_version` and
        `pushed_destination` (strings, when pushed), plus `reason` (string: why it was or was not pushed).
    """
    executor.run_push(model, model_blessing, evaluation, examples, profile, pushed_model, serving_dir, model_name,
                      num_check_examples, num_profile_examples)
