"""`--engine beam`'s workers run as `flywheel.batch.worker`, without the packages scoring never uses."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from flywheel.batch import predict as batch_predict
from flywheel.batch import worker


def _where_it_ran(element: int) -> str:
    """Runs in a worker: which process, started as which module, doing without which packages."""
    main = sys.modules["__main__"]
    return json.dumps({"element": element, "pid": os.getpid(), "main": getattr(main.__spec__, "name", None),
                       "left_out": [name for name in worker.UNUSED_PACKAGES
                                    if name in sys.modules and sys.modules[name] is None],
                       "distutils": os.environ.get(worker.DISTUTILS_VARIABLE)})


@pytest.mark.slow  # a Beam job on worker processes
def test_the_beam_engines_workers_start_as_the_lean_worker(tmp_path, caplog):
    """Through the engine's real runner and worker processes: each element is handled in a worker started as
    `flywheel.batch.worker`, where the unused packages are left out; this process keeps them. Beam's warning
    that the mode should be multi-processing (it is, but for its name) is not shown."""
    caplog.set_level(logging.WARNING)
    options = PipelineOptions(list(batch_predict.beam_args("beam")))
    out = str(tmp_path / "where")
    chosen = batch_predict.runner(options)
    with batch_predict._quiet_about_worker_mode(chosen), beam.Pipeline(runner=chosen, options=options) as pipeline:
        (pipeline | beam.Create(range(4)) | beam.Reshuffle() | beam.Map(_where_it_ran)
         | beam.io.WriteToText(out, shard_name_template=""))
    with open(out) as f:
        records = [json.loads(line) for line in f]
    assert sorted(r["element"] for r in records) == [0, 1, 2, 3]
    for record in records:
        assert record["pid"] != os.getpid() and record["main"] == "flywheel.batch.worker"
        assert record["left_out"] == list(worker.UNUSED_PACKAGES)
        assert record["distutils"] == worker.DISTUTILS_STDLIB
    assert not [r for r in caplog.records if "direct_running_mode" in r.getMessage()]
    import pandas  # the launching process (here as a library user's) keeps every package

    assert pandas.DataFrame is not None


def test_the_local_engine_keeps_the_direct_runner():
    assert batch_predict.runner(PipelineOptions(list(batch_predict.beam_args("local")))) == "DirectRunner"


def test_left_out_packages_fail_to_import_and_beam_still_writes_parquet(tmp_path):
    """In a fresh process (as the command line's launcher and each worker): an unused package's import raises
    ImportError, Beam's Parquet and text sinks and the GCS filesystem are still there."""
    code = ("import sys\n"
            "from flywheel.batch import worker\n"
            "worker.leave_out_unused()\n"
            "import apache_beam as beam\n"
            "from apache_beam.io.gcp import gcsfilesystem\n"
            "failed = []\n"
            "for name in worker.UNUSED_PACKAGES:\n"
            "    try:\n"
            "        __import__(name)\n"
            "    except ImportError:\n"
            "        failed.append(name)\n"
            "print(failed == list(worker.UNUSED_PACKAGES), hasattr(beam.io, 'WriteToParquetBatched'),\n"
            "      hasattr(beam.io, 'WriteToText'), gcsfilesystem.GCSFileSystem.scheme())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True", "gs"]
