"""The `flywheel` command line: run | ingest | monitor | simulate | retrain | lineage | compile | serve | status ...

`main` parses the arguments (`flywheel.cli.parser`), then loads the command's handler, which calls one function
of the library API (`flywheel.api`), prints its result (`--json`: only JSON on stdout, progress on stderr) and
returns an exit status from `flywheel.cli.exits`. A handler is named by dotted path and imported only once its
command is chosen (as the pipeline registry names a pipeline's parts): the API's domains import Beam, TFX,
pyarrow or the HTTP server, and `flywheel --help` or one command loads none it does not use.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any, Callable, Optional

from flywheel import lock, quiet
from flywheel.api.errors import UsageError, new_or_empty_folder
from flywheel.batch import worker
from flywheel.cli import exits
from flywheel.cli.parser import make_parser
from flywheel.cli.text import err
from flywheel.pipelines import registry

HANDLERS = {
    "run": "flywheel.cli.pipeline.cmd_run", "compile": "flywheel.cli.pipeline.cmd_compile",
    "simulate": "flywheel.cli.pipeline.cmd_simulate", "lineage": "flywheel.cli.pipeline.cmd_lineage",
    "ingest": "flywheel.cli.ingest.cmd_ingest", "retrain": "flywheel.cli.retraining.cmd_retrain",
    "monitor": "flywheel.cli.monitoring.cmd_monitor", "replay": "flywheel.cli.traffic.cmd_replay",
    "logs": "flywheel.cli.traffic.cmd_logs", "serve": "flywheel.cli.serving.cmd_serve",
    "status": "flywheel.cli.serving.cmd_status", "predict": "flywheel.cli.batch.cmd_predict",
    "rollout": "flywheel.cli.rollout.cmd_rollout", "privacy": "flywheel.cli.privacy.cmd_privacy",
}


def handler(command: str) -> Callable[[Any], int]:
    """The command's handler, its module imported now."""
    module, _, name = HANDLERS[command].rpartition(".")
    return getattr(importlib.import_module(module), name)


def _prepare(args: argparse.Namespace) -> None:
    """What must happen before the command's modules are imported (they import TensorFlow, Beam): TensorFlow's
    logs quieted unless --verbose, and, for `predict --engine beam` as the `flywheel` command (a process that only
    launches the pipeline), the packages batch inference never uses left out. Called in-process (a test, a
    notebook), `predict` leaves the caller's imports alone."""
    if hasattr(args, "verbose"):
        quiet.quiet_environment(args.verbose)
    if args.command == "predict" and args.engine == "beam" and args.own_process:
        worker.leave_out_unused()


def main(argv: Optional[list[str]] = None, *, own_process: bool = False) -> int:
    """Runs one command; own_process: this process is the `flywheel` command's own (`run`), not a caller's."""
    args = make_parser().parse_args(argv)
    args.own_process = own_process
    _prepare(args)
    try:
        if getattr(args, "pipeline", None) is not None:
            registry.get(args.pipeline)
        if args.command == "predict":  # before its handler imports Beam and TensorFlow (seconds)
            new_or_empty_folder(args.output, "predict: --output")
        return handler(args.command)(args)
    except (UsageError, registry.UnknownPipelineError, lock.LockPermissionError) as e:
        err(f"{args.command}: {e}" if str(e).startswith("--") else str(e))
        return exits.USAGE
    except lock.LockedError as e:
        err(str(e))
        return exits.LOCKED


def run() -> None:
    """The `flywheel` command: `main`, then the end of the process without the interpreter's teardown
    (`quiet.end_process`)."""
    quiet.end_process(main(own_process=True))
