"""The worker process `--engine beam` starts: Beam's own SDK worker, without the packages batch inference never uses.

Run as `python -m flywheel.batch.worker` by the FnApiRunner (`predict.runner`), in place of Beam's
`python -m apache_beam.runners.worker.sdk_worker_main`, which it then runs. Most of a worker's memory is the
Python modules it imports, and Beam and TensorFlow import several packages merely because they are installed,
each import guarded (`except ImportError`) so that a missing one is skipped: `apache_beam.io` imports the
BigQuery and Pub/Sub connectors' client libraries (BigQuery's pulls in tqdm's notebook widgets, hence
IPython), `apache_beam.typehints` imports pandas, TensorFlow imports `tf_keras`'s optimizers (for Keras models
restored from a SavedModel's object graph, which tfx-bsl's graph loader does not use) and, through its legacy
Keras layers, scipy and h5py. Here they are left out as if not installed (`sys.modules[name] = None`, Python's
documented way of making an import raise ImportError), and `import distutils` (TensorFlow's first import) gets
the standard library's instead of setuptools' copy, which would import setuptools and pkg_resources. Measured
with the taxi model: 0.59 GB instead of 0.70 GB resident per worker; see `flywheel/batch/README.md`.

The `flywheel predict --engine beam` command does the same in its own process, which only builds and launches
the pipeline (0.17 GB instead of 0.22 GB); `flywheel.api.batch.predict` does not: a library user's process
keeps every package.
"""

from __future__ import annotations

import os
import shlex
import sys

# Imported by Beam or TensorFlow when installed, behind `except ImportError`, and never used to score a span:
# the client libraries of Beam's BigQuery and Pub/Sub connectors (not Google Cloud Storage's: gs://
# paths stay readable and writable), pandas (Beam's DataFrame type hints), tf_keras (TensorFlow's eager import
# of Keras optimizers), scipy and h5py (TensorFlow's legacy Keras layers).
UNUSED_PACKAGES = ("google.cloud.bigquery", "google.cloud.bigquery_storage_v1", "google.cloud.pubsub", "pandas",
                   "tf_keras", "scipy", "h5py")
# `import distutils` resolves to the standard library's module (Python <= 3.11) rather than setuptools' copy.
DISTUTILS_VARIABLE, DISTUTILS_STDLIB = "SETUPTOOLS_USE_DISTUTILS", "stdlib"


def command() -> str:
    """The shell command the runner starts each worker with (this module, under this interpreter)."""
    return f"{shlex.quote(sys.executable)} -m {__name__}"


def leave_out_unused() -> None:
    """Makes this process import none of UNUSED_PACKAGES (an import of one raises ImportError) and the standard
    library's distutils. Only for a process that does nothing but batch inference (a worker, the command line's
    launcher), before Beam is imported; a package already imported stays."""
    if sys.version_info < (3, 12):
        os.environ.setdefault(DISTUTILS_VARIABLE, DISTUTILS_STDLIB)
    for name in UNUSED_PACKAGES:
        sys.modules.setdefault(name, None)


def main(argv: list[str]) -> None:
    leave_out_unused()
    from apache_beam.runners.worker import sdk_worker_main  # Beam: imported only after leave_out_unused()

    sdk_worker_main.main(argv)


if __name__ == "__main__":
    main(sys.argv)
