"""Push: the thin component. An unblessed or unchanged model is not pushed; the execution still succeeds."""

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts


@component
def Push(  # noqa: N802 - TFX component names are classes
    model: InputArtifact[standard_artifacts.Model],
    model_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    examples: InputArtifact[standard_artifacts.Examples],
    pushed_model: OutputArtifact[standard_artifacts.PushedModel],
    serving_dir: Parameter[str],
    model_name: Parameter[str],
    num_check_examples: Parameter[int] = 8,
    serving_version: Parameter[int] = -1,
) -> None:
    """Publishes a blessed model to `<serving_dir>/<model_name>/<version>/` with push.json.

    `serving_version` is the latest version in serving when the pipeline was built (0: none, -1: not
    known, e.g. a Kubeflow runtime parameter). Only the cache key uses it, so a serving folder that
    changed or was emptied since is never answered by a cached push; the push itself reads the folder.
    """
    from flywheel.components.push import executor

    executor.run_push(model, model_blessing, evaluation, examples, pushed_model, serving_dir, model_name,
                      num_check_examples)
