"""The taxi pipeline's typed configuration: what it does (TaxiConfig) and where it keeps things (Paths)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from typing import Union

from flywheel import engines, schemas
from flywheel.metadata import connection

PIPELINE_NAME = "taxi"
UNCACHED_NODES = ("Decide",)  # nodes every run must execute (the runners turn their caching off)


def shipped_data() -> str:
    """The 15,002-row Chicago taxi CSV shipped inside the tfx wheel (no download)."""
    spec = importlib.util.find_spec("tfx")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("taxi: the tfx package is not installed, so its taxi data cannot be found")
    return os.path.join(list(spec.submodule_search_locations)[0], "examples", "chicago_taxi_pipeline", "data",
                        "simple", "data.csv")


def default_schema() -> str:
    return schemas.schema_path(PIPELINE_NAME)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


@dataclasses.dataclass(frozen=True)
class Paths:
    """Where a run reads and writes. Everything a run writes is under output_dir, except the serving
    folder when it is given elsewhere (several pipelines may share one)."""

    data_root: Union[str, object]
    output_dir: str
    pipeline_root: Union[str, object, None] = None
    serving_dir: Union[str, object, None] = None
    metadata_path: str | None = None  # a SQLite file or mysql://USER@HOST[:PORT]/DATABASE (metadata.connection)

    @classmethod
    def under(cls, output_dir: str, data_root: str | None = None, serving_dir: str | None = None,
              metadata: str | None = None) -> "Paths":
        """Paths below output_dir; serving_dir defaults to <output_dir>/serving, metadata (the ML-Metadata store) to
        <output_dir>/metadata.sqlite."""
        output_dir = _absolute(output_dir)
        return cls(data_root=data_root or shipped_data(), output_dir=output_dir,
                   pipeline_root=os.path.join(output_dir, "pipeline"),
                   serving_dir=_absolute(serving_dir) if serving_dir else os.path.join(output_dir, "serving"),
                   metadata_path=connection.canonical(metadata) if metadata
                   else os.path.join(output_dir, connection.SQLITE_FILE))


@dataclasses.dataclass(frozen=True)
class TaxiConfig:
    """The taxi pipeline. Defaults run on the data shipped in the tfx wheel."""

    paths: Paths
    pipeline_name: str = PIPELINE_NAME
    model_name: str = PIPELINE_NAME
    schema_path: str = dataclasses.field(default_factory=default_schema)
    span: int = -1
    num_spans: int = 1
    split_key_columns: tuple[str, ...] = ()
    quarantine_limit: float = 0.01
    allowed_anomalies: tuple[str, ...] = ()
    train_steps: int = 1000
    eval_steps: int = 100
    hidden_units: tuple[int, ...] = (16, 8)
    learning_rate: float = 0.005
    batch_size: int = 40
    seed: int = 0  # training's random seed: the same data and seed train the same model on one machine
    warm_start: bool = False
    min_auc: float = 0.75
    max_auc_drop: float = 0.0
    monitor_baseline: str | None = None  # retraining: the serving model's training profile ('' = none yet)
    retrain_if_drift: bool = False
    # The head of the pipeline decides (Decide: new data? drifted?) and the rest runs only when it says retrain;
    # num_spans is the training window, retrain_if_drift whether new data must also have drifted.
    continuous_training: bool = False
    beam_pipeline_args: tuple[str, ...] = ()
    enable_cache: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.train_steps < 1:
            problems.append(f"train_steps: expected >= 1, got {self.train_steps}")
        if self.eval_steps < 1:
            problems.append(f"eval_steps: expected >= 1, got {self.eval_steps}")
        if not 0.0 < self.min_auc < 1.0:
            problems.append(f"min_auc: expected within (0, 1), got {self.min_auc}")
        if self.max_auc_drop < 0:
            problems.append(f"max_auc_drop: expected >= 0, got {self.max_auc_drop}")
        if not 0.0 <= self.quarantine_limit <= 1.0:
            problems.append(f"quarantine_limit: expected within [0, 1], got {self.quarantine_limit}")
        if problems:
            raise ValueError("TaxiConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def make_paths(output_dir: str, data_root: str | None = None, serving_dir: str | None = None) -> Paths:
    """The registry's paths factory: Paths.under."""
    return Paths.under(output_dir, data_root, serving_dir)


def make_config(paths: Paths, train_steps: int | None = None, **options) -> TaxiConfig:
    """A TaxiConfig from the registry's generic options; train_steps None keeps the default."""
    if train_steps is not None:
        options["train_steps"] = train_steps
    return TaxiConfig(paths=paths, **options)


def with_beam_args(cfg: TaxiConfig, args: tuple[str, ...] | None = None) -> TaxiConfig:
    """The config with Beam pipeline args: `args`, or the Beam runner's default (`engines.MULTI_PROCESSING_ARGS`)."""
    return dataclasses.replace(cfg, beam_pipeline_args=tuple(args) if args else engines.MULTI_PROCESSING_ARGS)
