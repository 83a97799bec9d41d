"""Rollouts: start, promote, roll back or read a model's rollout; the production manifests written from it; and
the analysis that judges the candidate against stable on logged traffic, its decision applied."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Optional

from flywheel.api.errors import UsageError, folder_argument
from flywheel.api.results import as_dict
from flywheel.metadata import connection
from flywheel.rollout import manifests, models_config, report, state, store
from flywheel.rollout.analysis import AnalysisConfig, analyze, wait_for_settled_log
from flywheel.rollout.mlmd import record
from flywheel.store import layout


@dataclasses.dataclass(frozen=True)
class RolloutResult:
    """A rollout command's outcome: the state after it (rollout.json's content; None when the model has none),
    what a server must do (`routes`), the version served by default, the TF Serving mirror, and where the
    decision was recorded in ML-Metadata (metadata None: not recorded, state and models.config only)."""

    action: str
    model: str
    serving_dir: str
    serving_version: Optional[int]
    state: Optional[dict[str, Any]] = None
    routes: Optional[dict[str, Any]] = None
    models_config: Optional[str] = None
    metadata: Optional[str] = None
    execution_id: Optional[int] = None
    pushed_model_id: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


def _serving_folder(serving_dir: str, command: str) -> None:
    if not layout.filesystem(serving_dir).isdir(serving_dir):
        raise UsageError(f"rollout {command}: --serving-dir {serving_dir} is not a folder")


def _rollout_result(action: str, serving_dir: str, model: str, metadata: Optional[str] = None,
                    recorded: tuple[Optional[int], Optional[int]] = (None, None)) -> RolloutResult:
    try:
        found = store.load(serving_dir, model)
        served = layout.current(serving_dir, model)
    except ValueError as e:
        raise UsageError(str(e)) from e
    config = os.path.join(serving_dir, models_config.FILE_NAME)
    return RolloutResult(action=action, model=model, serving_dir=serving_dir,
                         serving_version=served.version if served else None,
                         state=found.to_dict() if found else None,
                         routes=state.routes(found).to_dict() if found else None,
                         models_config=config if found and layout.filesystem(config).exists(config) else None,
                         metadata=metadata if recorded[0] is not None else None, execution_id=recorded[0],
                         pushed_model_id=recorded[1])


def _metadata_store(action: str, metadata: Optional[str]) -> Optional[str]:
    """The canonical --metadata location (`flywheel.metadata.connection`), checked before anything changes: a SQLite
    file a run made, or a MySQL/MariaDB store that answers; UsageError otherwise."""
    if metadata is None:
        return None
    try:
        if connection.local_file(metadata) and not os.path.isfile(metadata):
            raise UsageError(f"rollout {action}: --metadata {metadata}: expected the ML-Metadata store of a pipeline "
                             "run (metadata.sqlite), found no file")
        return connection.check(metadata)
    except connection.MetadataStoreError as e:
        raise UsageError(f"rollout {action}: {e}") from e


def _rollout_change(action: str, serving_dir: str, model: str, metadata: Optional[str],
                    change: Callable[[], Any]) -> RolloutResult:
    _serving_folder(serving_dir, action)
    metadata = _metadata_store(action, metadata)
    try:
        after = change()
        recorded = record(metadata, after, after.decisions[-1]) if metadata else (None, None)
    except state.RolloutError as e:
        raise UsageError(str(e)) from e
    return _rollout_result(action, serving_dir, model, metadata, recorded)


def rollout_start(serving_dir: str, model: str = "taxi", *, version: int, mode: str, percent: Optional[float] = None,
                  reason: str = "", metadata: Optional[str] = None) -> RolloutResult:
    """Starts rolling out `version` (canary with `percent`, shadow or blue_green) against the stable version
    (`flywheel.rollout.store.start`); with `metadata`, the decision is also recorded in that ML-Metadata store."""
    return _rollout_change("start", serving_dir, model, metadata,
                           lambda: store.start(serving_dir, model, version, mode, percent, reason))


def rollout_promote(serving_dir: str, model: str = "taxi", *, reason: str = "",
                    metadata: Optional[str] = None) -> RolloutResult:
    """The running rollout's candidate becomes stable."""
    return _rollout_change("promote", serving_dir, model, metadata, lambda: store.promote(serving_dir, model, reason))


def rollout_rollback(serving_dir: str, model: str = "taxi", *, reason: str = "",
                     metadata: Optional[str] = None) -> RolloutResult:
    """The running rollout's candidate stops taking traffic and is never served by default again."""
    return _rollout_change("rollback", serving_dir, model, metadata,
                           lambda: store.rollback(serving_dir, model, reason))


def rollout_status(serving_dir: str, model: str = "taxi") -> RolloutResult:
    """The model's rollout state and the version served by default (nothing is written)."""
    _serving_folder(serving_dir, "status")
    return _rollout_result("status", serving_dir, model)


# ---- manifests -----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ManifestsResult:
    """The production manifests written from a rollout state: TF Serving's models.config and KServe
    InferenceServices (file paths), and what they do not cover (notes)."""

    model: str
    output: str
    files: list[str]
    storage_uri: str
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


def rollout_manifests(serving_dir: str, output: str, model: str = "taxi", *,
                      storage_uri: Optional[str] = None) -> ManifestsResult:
    """Writes `models.config` (TF Serving) and `<model>-stable.yaml` / `<model>-candidate.yaml` (KServe
    InferenceService) into `output` from the model's rollout state (`flywheel.rollout.manifests.write`).
    storage_uri: a template for a version's storage URI (`{model}`, `{version}`; default
    `manifests.DEFAULT_STORAGE_URI`)."""
    _serving_folder(serving_dir, "manifests")
    folder_argument(output, "rollout manifests: --output")
    template = storage_uri or manifests.DEFAULT_STORAGE_URI
    try:
        written = manifests.write(serving_dir, model, output, template)
    except (state.RolloutError, KeyError, IndexError) as e:
        raise UsageError(str(e)) from e
    return ManifestsResult(model=model, output=output, files=written.files, storage_uri=template, notes=written.notes)


# ---- analysis ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AnalyzeResult:
    """`rollout analyze`: the analysis (decision, reasons, checks, evidence) and what was done with it: `applied`
    is promote | rollback | wait when the decision was applied to the rollout state (None: --dry-run), `state`
    the rollout state after it."""

    analysis: Any
    applied: Optional[str]
    state: Optional[dict[str, Any]]
    metadata: Optional[str] = None
    idle: str = ""

    @property
    def decision(self) -> Optional[str]:
        """promote | rollback | wait; None when there was no rollout to analyze (`idle` says so)."""
        return self.analysis.decision if self.analysis is not None else None

    def to_dict(self) -> dict[str, Any]:
        if self.analysis is None:
            return {"decision": None, "applied": None, "state": self.state, "metadata": self.metadata,
                    "idle": self.idle}
        return {**self.analysis.to_dict(), "applied": self.applied, "state": self.state, "metadata": self.metadata}


def rollout_analyze(serving_dir: str, model: str, log_dir: str, labels: Optional[str] = None, config: Any = None,
                    report_dir: Optional[str] = None, *, apply: bool = True, metadata: Optional[str] = None,
                    idle_ok: bool = False, wait_for_log: float = 0.0) -> AnalyzeResult:
    """`flywheel rollout analyze`: the rollout in progress (its stable and candidate versions and start time, from
    the rollout state) judged on the request log under `log_dir` (rows logged after the start; `labels`: the log
    with labels joined) -> `flywheel.rollout.analysis.AnalysisResult` (promote | rollback | wait, reasons,
    evidence); analysis.json and report.html into `report_dir` when given. config: an `AnalysisConfig`, the path
    of a JSON/YAML file of thresholds, or None (the defaults).

    apply: the decision is carried out at once (`flywheel.rollout.store.apply_decision`) — promote, rollback (by
    itself, when the rule says so), or an `analyze` decision recorded while waiting — with the reasons and the
    checks as its evidence in rollout.json (and in ML-Metadata with `metadata`).

    idle_ok: no rollout in progress is a result (decision None, `idle` saying so), not an error — for a job run
    on a schedule, which finds a rollout to judge only now and then.
    wait_for_log: seconds to wait, at most, for the request log to settle before it is read (its newest row two
    of the server's flush intervals old: what the server held when the traffic stopped is then written)."""
    if not 0 <= wait_for_log < math.inf:
        raise UsageError(f"rollout analyze: --wait-for-log: expected seconds >= 0, got {wait_for_log}")
    metadata = _metadata_store("analyze", metadata) if apply else metadata
    folder_argument(report_dir, "rollout analyze: --report-dir")
    try:
        if config is None or isinstance(config, AnalysisConfig):
            rule = config or AnalysisConfig()
        else:
            rule = AnalysisConfig.load(str(config))
        current = store.load(serving_dir, model)
        if current is None or current.candidate is None:
            if idle_ok:
                return AnalyzeResult(None, None, current.to_dict() if current else None,
                                     idle=f"no rollout in progress for {model!r} in {serving_dir}: nothing to analyze")
            raise UsageError(f"rollout analyze: no rollout in progress for {model!r} in {serving_dir}: start one "
                             "with `flywheel rollout start`")
        if wait_for_log > 0:
            wait_for_settled_log(log_dir, wait_for_log)
        found = analyze(log_dir, current.stable, current.candidate, since=current.started, labels=labels,
                        config=rule, model=model)
        if report_dir:
            found = report.write(found, report_dir)
        if not apply:
            return AnalyzeResult(found, None, current.to_dict())
        after = store.apply_decision(serving_dir, model, found.decision, found.decision_reason(),
                                     found.decision_evidence())
        if metadata:
            record(metadata, after, after.decisions[-1])
        return AnalyzeResult(found, found.decision, after.to_dict(), metadata)
    except UsageError:
        raise
    except (ValueError, OSError) as e:
        raise UsageError(str(e)) from e
