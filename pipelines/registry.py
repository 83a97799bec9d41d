"""The pipelines flywheel knows by name: what `flywheel run NAME` and the library functions look up.

An entry names its parts by dotted path, imported only when used, so looking a pipeline up costs no
TensorFlow import (the unchanged-rerun and no-drift paths stay fast). Register another pipeline with
`register(PipelineEntry(...))` before calling the library.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Callable


class UnknownPipelineError(LookupError):
    """A pipeline name that is not registered."""


def _resolve(dotted: str) -> Callable[..., Any]:
    module, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _call(dotted: str, *args: Any) -> Any:
    return _resolve(dotted)(*args)


@dataclasses.dataclass(frozen=True)
class PipelineEntry:
    """A registered pipeline. Every field but `name` is a dotted path to a callable.

    config:    (paths, **options) -> the pipeline's frozen config (with `pipeline_name`, `model_name`,
               `paths`, `to_dict()`); `paths` is made by `paths(output_dir, data_root, serving_dir)`.
    runners:   engine -> `run(config)` (each runs create_pipeline(config) to completion).
    beam_args: (config, args) -> the config with Beam pipeline args (defaults when args are empty).
    compile:   (output, image, **options) -> path of the Kubeflow spec written.
    simulate:  (out_dir, spans, drift_from, rows, seed, files) -> files written; '' when the pipeline has none.
    schema:    () -> path of the curated schema.
    binary_label: () -> the join's rule for the binary training label from the raw one
               (flywheel.traffic.join.BinaryLabel); '' when the raw label is the training label.
    summary:   (records, config) -> (a run's summary fields, whether the data gate stopped it), from the run's
               ML-Metadata records; by default that of a pipeline of flywheel's components.
    """

    name: str
    config: str
    paths: str
    runners: tuple[tuple[str, str], ...]
    beam_args: str
    compile: str
    schema: str
    simulate: str = ""
    kubeflow_output: str = ""
    binary_label: str = ""
    summary: str = "flywheel.pipelines.summary.summarize"

    def make_config(self, **options: Any) -> Any:
        return _resolve(self.config)(**options)

    def make_paths(self, output_dir: str, data_root: str | None = None, serving_dir: str | None = None) -> Any:
        return _resolve(self.paths)(output_dir, data_root, serving_dir)

    @property
    def engines(self) -> tuple[str, ...]:
        return tuple(engine for engine, _ in self.runners)

    def runner(self, engine: str) -> Callable[[Any], None]:
        """The engine's `run(config)`; its module (TFX, TensorFlow) is imported when it runs, not when it is found."""
        found = dict(self.runners).get(engine)
        if found is None:
            raise ValueError(f"pipeline {self.name!r}: unknown engine {engine!r}; engines: {', '.join(self.engines)}")
        return functools.partial(_call, found)

    def with_beam_args(self, cfg: Any, args: tuple[str, ...]) -> Any:
        return _resolve(self.beam_args)(cfg, args)

    def compile_pipeline(self, output: str, image: str | None, **options: Any) -> str:
        """options: the pipeline's own compile options (e.g. taxi's data_pvc, serving_pvc)."""
        return _resolve(self.compile)(output, image=image, **options)

    def schema_path(self) -> str:
        return _resolve(self.schema)()

    def label_rule(self) -> Any:
        return _resolve(self.binary_label)() if self.binary_label else None

    def summarize(self, records: dict[str, Any], cfg: Any) -> tuple[dict[str, Any], bool]:
        return _resolve(self.summary)(records, cfg)

    def simulator(self) -> Callable[..., list[str]]:
        if not self.simulate:
            raise ValueError(f"pipeline {self.name!r} has no data simulator")
        return _resolve(self.simulate)


TAXI = PipelineEntry(
    name="taxi",
    config="flywheel.pipelines.taxi.config.make_config",
    paths="flywheel.pipelines.taxi.config.make_paths",
    runners=(("local", "flywheel.pipelines.taxi.local_runner.run"),
             ("beam", "flywheel.pipelines.taxi.beam_runner.run")),
    beam_args="flywheel.pipelines.taxi.config.with_beam_args",
    compile="flywheel.pipelines.taxi.kubeflow_runner.compile_pipeline",
    schema="flywheel.pipelines.taxi.config.default_schema",
    simulate="flywheel.pipelines.taxi.simulate.simulate_spans",
    kubeflow_output="kubeflow/taxi_pipeline.yaml",
    binary_label="flywheel.pipelines.taxi.labels.binary_label",
)

_REGISTRY: dict[str, PipelineEntry] = {TAXI.name: TAXI}
DEFAULT = TAXI.name  # what `flywheel lineage` describes when no pipeline is named


def register(entry: PipelineEntry) -> None:
    """Adds (or replaces) a pipeline under entry.name."""
    _REGISTRY[entry.name] = entry


def names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def get(name: str) -> PipelineEntry:
    """The registered pipeline; an unknown name is an error that lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownPipelineError(f"unknown pipeline {name!r}; known pipelines: {', '.join(names())}") from None
