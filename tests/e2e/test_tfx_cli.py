"""The TFX CLI on the taxi runners, as a user types it: `tfx pipeline create` registers the pipeline without
running it, `tfx run create` runs it, on the local and the Beam engine, each with a fresh HOME (where the CLI
keeps what it registered). The CLI's neighbours (update, compile, list, delete) are checked on the local one."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from flywheel import lock
from tests import tiny_runs
from tests.conftest import REPO

BIN = os.path.dirname(sys.executable)
RUNNERS = {"local": "pipelines/taxi/local_runner.py", "beam": "pipelines/taxi/beam_runner.py"}
ROWS = 3000
TRAIN_STEPS = "20"
# what a user's shell has: the tests' own process sets these, the CLI and the runner must do without them
UNSET = ("TF_USE_LEGACY_KERAS", "TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")


@dataclasses.dataclass
class Cli:
    """One user's TFX CLI: its HOME, its environment and the engine it registers the taxi pipeline on."""

    engine: str
    home: str
    output_dir: str
    env: dict

    def __call__(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        """`tfx ARGS --engine ENGINE`, from the repository root (the CLI keeps the pipeline path as given)."""
        return subprocess.run([os.path.join(BIN, "tfx"), *args, "--engine", self.engine], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=timeout)

    def create(self) -> subprocess.CompletedProcess:
        return self("pipeline", "create", "--pipeline_path", RUNNERS[self.engine])

    def run(self) -> subprocess.CompletedProcess:
        return self("run", "create", "--pipeline_name", "taxi")

    @property
    def registered(self) -> str:
        return os.path.join(self.home, "tfx", self.engine, "taxi", "pipeline_args.json")

    @property
    def metadata(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")


def make_cli(engine: str, root, **env: str) -> Cli:
    home, out = root / "home", root / "out"
    home.mkdir()
    data = tiny_runs.write_sample(str(root / "data"), 0, rows=ROWS)
    base = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("FLYWHEEL_")}
    # PATH holds the venv's bin: the CLI runs `pip freeze` from PATH when it starts
    full = {**base, "HOME": str(home), "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
            "FLYWHEEL_OUTPUT_DIR": str(out), "FLYWHEEL_DATA": data, "FLYWHEEL_TRAIN_STEPS": TRAIN_STEPS, **env}
    return Cli(engine, str(home), str(out), full)


def pipeline_runs(metadata_path: str) -> list[dict[str, str]]:
    """Each run of the taxi pipeline in the store, oldest first: node -> execution state (COMPLETE, CACHED, ...)."""
    from ml_metadata.proto import metadata_store_pb2

    from flywheel.metadata import run_record

    store = run_record.open_store(metadata_path)
    name = metadata_store_pb2.Execution.State.Name
    return [{run_record.node_id(store, e): name(e.last_known_state) for e in store.get_executions_by_context(r.id)}
            for r in run_record.pipeline_runs(store, "taxi")]


def listing(folder: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)


@dataclasses.dataclass
class Session:
    cli: Cli
    created: subprocess.CompletedProcess
    registration: dict  # what `pipeline create` recorded, read before anything else ran
    after_create: list[str]
    runs: list[subprocess.CompletedProcess]


def create_and_run(cli: Cli, times: int) -> Session:
    created = cli.create()
    registration = {}
    if os.path.exists(cli.registered):
        with open(cli.registered) as f:
            registration = json.load(f)
    after_create = listing(cli.output_dir)
    return Session(cli, created, registration, after_create, [cli.run() for _ in range(times)])


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> Session:
    """The README's commands on the local engine: the taxi pipeline registered, then run once."""
    return create_and_run(make_cli("local", tmp_path_factory.mktemp("tfx_local")), times=1)


@pytest.fixture(scope="module")
def beam(tmp_path_factory) -> Session:
    """The Beam engine with Decide at the pipeline's head (FLYWHEEL_CONTINUOUS_TRAINING=1), run twice: the second
    run finds nothing new. Beam args through FLYWHEEL_BEAM_ARGS: the in-memory DirectRunner, which spares the
    default's worker processes (each imports TensorFlow; tests/e2e/test_pipeline_runs.py runs the default)."""
    cli = make_cli("beam", tmp_path_factory.mktemp("tfx_beam"), FLYWHEEL_CONTINUOUS_TRAINING="1",
                   FLYWHEEL_BEAM_ARGS="--direct_running_mode=in_memory")
    return create_and_run(cli, times=2)


@pytest.fixture(params=["local", "beam"])
def session(request) -> Session:
    return request.getfixturevalue(request.param)


def test_pipeline_create_registers_without_running(session):
    cli, created = session.cli, session.created
    assert created.returncode == 0, created.stdout + created.stderr
    assert 'Pipeline "taxi" created successfully.' in created.stdout
    assert session.registration == {"pipeline_name": "taxi", "pipeline_root": os.path.join(cli.output_dir, "pipeline"),
                                    "pipeline_dsl_path": RUNNERS[cli.engine]}
    # building the pipeline pins the schema (a content-addressed copy) under the output directory's lock; nothing
    # ran: no metadata, no artifacts
    lock_file, schema = session.after_create
    assert lock_file == lock.LOCK_FILE
    assert schema.startswith("schemas" + os.sep) and schema.endswith(os.sep + "schema.pbtxt")
    assert "Traceback" not in created.stderr


def test_run_create_runs_to_a_pushed_model(session):
    from flywheel.store import layout

    first = session.runs[0]
    assert first.returncode == 0, first.stdout + first.stderr
    states = pipeline_runs(session.cli.metadata)[0]
    assert set(states.values()) == {"COMPLETE"}, states
    assert {"Ingest", "Trainer", "Evaluate", "Push"} <= set(states)
    versions = layout.versions(os.path.join(session.cli.output_dir, "serving"), "taxi")
    assert len(versions) == 1
    version_dir = os.path.join(session.cli.output_dir, "serving", "taxi", str(versions[0]))
    with open(os.path.join(version_dir, "push.json")) as f:
        assert json.load(f)["blessing"]["blessed"] is True
    assert os.path.exists(os.path.join(version_dir, "saved_model.pb"))
    # a line per component on stdout; TensorFlow's and Beam's logs kept out of the user's terminal
    assert "✓ Push" in first.stdout and "✓ Trainer" in first.stdout
    assert "WARNING:tensorflow" not in first.stderr and "Traceback" not in first.stderr, first.stderr[-3000:]


def test_decide_runs_on_every_run_through_the_cli(beam):
    """Decide's caching is off in the IR the Beam runner runs (the TFX DSL sets caching for the whole pipeline): on
    a second run with nothing new it executes again, and decides so, while everything upstream is a cache hit."""
    second = beam.runs[1]
    assert second.returncode == 0, second.stdout + second.stderr
    first_run, second_run = pipeline_runs(beam.cli.metadata)
    assert first_run["Decide"] == second_run["Decide"] == "COMPLETE"
    assert {second_run[n] for n in ("Ingest", "StatisticsGen", "DataGate")} == {"CACHED"}
    assert "Trainer" not in second_run and "Push" not in second_run  # nothing new: the training branch is skipped


def test_pipeline_update_compile_list_and_delete(local):
    """The neighbours on the registered local pipeline: update and compile build it again without running it, list
    names it, run list is not supported by the CLI's local engine, a run refuses while another process holds the
    output directory, a run reads the environment it is started in (here data that is not there), delete forgets
    the pipeline and keeps what it produced."""
    cli = local.cli
    before = len(pipeline_runs(cli.metadata))
    again = cli.create()
    assert again.returncode != 0 and 'Pipeline "taxi" already exists.' in again.stdout + again.stderr
    updated = cli("pipeline", "update", "--pipeline_path", RUNNERS["local"])
    assert updated.returncode == 0 and 'Pipeline "taxi" updated successfully.' in updated.stdout, updated.stderr
    compiled = cli("pipeline", "compile", "--pipeline_path", RUNNERS["local"])
    assert compiled.returncode == 0 and "Pipeline compiled successfully." in compiled.stdout, compiled.stderr
    assert len(pipeline_runs(cli.metadata)) == before
    listed = cli("pipeline", "list")
    assert listed.returncode == 0 and "taxi" in listed.stdout.splitlines()
    runs = cli("run", "list", "--pipeline_name", "taxi")
    assert "Not supported for local orchestrator." in runs.stdout
    with lock.exclusive(cli.output_dir):
        locked = cli.run()
    assert locked.returncode != 0  # the runner's one line, then the CLI's own 'Error while running ...'
    assert any(line.startswith(f"flywheel: taxi pipeline: {cli.output_dir} is in use by pid {os.getpid()}")
               for line in locked.stderr.splitlines()), locked.stderr
    assert "Traceback" not in locked.stderr and len(pipeline_runs(cli.metadata)) == before
    # the CLI keeps only the file's path: the environment of `run create` is the run's
    missing = os.path.join(cli.output_dir, "no-data")
    elsewhere = dataclasses.replace(cli, env={**cli.env, "FLYWHEEL_DATA": missing}).run()
    assert elsewhere.returncode != 0 and "Traceback" not in elsewhere.stderr
    assert f"flywheel: taxi pipeline: ingest: input '{missing}' does not exist" in elsewhere.stderr.splitlines()
    *_, failed = pipeline_runs(cli.metadata)
    # the input check is Ingest's driver, which fails before TFX marks the execution: it is left RUNNING
    assert len(pipeline_runs(cli.metadata)) == before + 1 and set(failed) == {"ImportSchemaGen", "Ingest"}
    assert failed["Ingest"] != "COMPLETE"
    deleted = cli("pipeline", "delete", "--pipeline_name", "taxi")
    assert deleted.returncode == 0 and 'Pipeline "taxi" deleted successfully.' in deleted.stdout, deleted.stderr
    assert not os.path.exists(os.path.dirname(cli.registered))
    assert os.listdir(os.path.join(cli.output_dir, "serving", "taxi")) and pipeline_runs(cli.metadata)
    gone = cli.run()
    assert gone.returncode != 0 and 'Pipeline "taxi" does not exist.' in gone.stdout + gone.stderr
    assert len(pipeline_runs(cli.metadata)) == before + 1


@pytest.mark.parametrize("name, value, expected", [
    ("FLYWHEEL_TRAIN_STEPS", "many", "FLYWHEEL_TRAIN_STEPS: expected a whole number of steps, got 'many'"),
    ("FLYWHEEL_CONTINUOUS_TRAINING", "yes", "FLYWHEEL_CONTINUOUS_TRAINING: expected 1 (Decide heads the pipeline) "
                                           "or 0, got 'yes'"),
])
def test_a_bad_setting_is_one_line_and_registers_nothing(tmp_path, name, value, expected):
    cli = make_cli("local", tmp_path, **{name: value})
    created = cli.create()
    assert created.returncode != 0
    assert created.stderr.strip().splitlines()[-1] == f"flywheel: taxi pipeline: {expected}"
    assert "Traceback" not in created.stderr
    assert not os.path.exists(cli.registered)


@pytest.mark.parametrize("engine", ["local", "beam"])
def test_the_clis_patch_catches_the_runner_and_decide_stays_uncached(tmp_path, monkeypatch, engine):
    """In this process, with the TFX CLI's own patchers: the runner's `run` is the one the CLI replaces (nothing
    runs; the pipeline's name and root are captured). Unpatched, the compiled pipeline that reaches TFX's
    run_with_ir has caching off for Decide alone."""
    from tfx.tools.cli.handler import beam_dag_runner_patcher, local_dag_runner_patcher

    from flywheel.pipelines.taxi import beam_runner, local_runner

    module, patcher = {"local": (local_runner, local_dag_runner_patcher.LocalDagRunnerPatcher()),
                       "beam": (beam_runner, beam_dag_runner_patcher.BeamDagRunnerPatcher())}[engine]
    cfg = tiny_runs.config(str(tmp_path / "out"), str(tmp_path), continuous_training=True)
    with patcher.patch() as context:
        module.run(cfg)
    assert patcher.run_called and context[patcher.PIPELINE_NAME] == "taxi"
    assert context[patcher.PIPELINE_ROOT] == cfg.paths.pipeline_root
    assert not os.path.exists(cfg.paths.metadata_path) and not os.path.exists(cfg.paths.pipeline_root)
    received = []
    monkeypatch.setattr(patcher.get_runner_class(), "run_with_ir", lambda self, ir, **kwargs: received.append(ir))
    module.run(cfg)
    (ir,) = received
    caching = {n.pipeline_node.node_info.id: n.pipeline_node.execution_options.caching_options.enable_cache
               for n in ir.nodes}
    assert caching.pop("Decide") is False and caching and all(caching.values())
