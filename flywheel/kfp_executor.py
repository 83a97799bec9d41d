"""The container entrypoint of every task in the compiled Kubeflow spec: TFX's, knowing flywheel's artifact types.

    python -m flywheel.kfp_executor --executor_class_path ... --json_serialized_invocation_args ... [beam args]

takes the arguments of `tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor` and runs it.
TFX's entrypoint turns each artifact's schema title back into a Python class: its own types through
`compiler_utils.TITLE_TO_CLASS_PATH`, any other title by importing it as a class path. `system.HTML`,
`system.Markdown` (the types the KFP UI renders) and flywheel's own (`flywheel.GateVerdict`,
`flywheel.DataProfile`, ...) are not class paths, so this module maps them to their classes first; a test
checks every custom title in the compiled spec is mapped.
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence

import absl.app

# The container command of every task in the compiled spec (KubeflowV2DagRunnerConfig's default_commands).
COMMAND = ("python", "-m", "flywheel.kfp_executor")

# schema title (the artifact's TYPE_NAME, as TFX's compiler writes it) -> importable class path
CLASS_PATHS = {
    "system.HTML": "flywheel.components.common.ui_artifacts.HTML",
    "system.Markdown": "flywheel.components.common.ui_artifacts.Markdown",
    "flywheel.GateVerdict": "flywheel.components.data_gate.spec.GateVerdict",
    "flywheel.DataProfile": "flywheel.components.monitor.spec.DataProfile",
    "flywheel.DriftReport": "flywheel.components.monitor.spec.DriftReport",
    "flywheel.Quarantine": "flywheel.components.ingest.spec.Quarantine",
    "flywheel.RetrainDecision": "flywheel.components.decide.spec.RetrainDecision",
}


def register_artifact_types() -> None:
    """Adds CLASS_PATHS to TFX's title-to-class map, which its entrypoint consults before importing a title."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils  # TFX imports TensorFlow: only the container needs it

    compiler_utils.TITLE_TO_CLASS_PATH.update(CLASS_PATHS)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Runs TFX's Kubeflow v2 executor entrypoint on argv (default sys.argv) with flywheel's types registered."""
    # TFX's entrypoint imports TensorFlow: only the container's process needs it (the compiler imports COMMAND)
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

    register_artifact_types()
    absl.app.run(kubeflow_v2_run_executor.main, argv=list(sys.argv if argv is None else argv),
                 flags_parser=kubeflow_v2_run_executor._parse_flags)  # noqa: SLF001 - the entrypoint's own argument parser


if __name__ == "__main__":
    main()
