"""Per-span profiles inside the ingestion's Beam pipeline: a CombineFn over the typed rows, bounded memory.

Ingest's parser emits (span, profile of a file's typed rows) pairs, or (span, typed row) pairs; `SpanProfiles`
combines them per span (partial combines on each worker, merged exactly: see `profile`) and writes
`profile-span-<N>.json` into the DataProfile artifact through TFX's filesystem layer (`common.storage`). Every
span gets a profile, even one whose rows were all quarantined (0 rows), so a span is never silently missing;
`check_span_profiles` verifies that.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import apache_beam as beam

from flywheel import storage
from flywheel.monitoring import profile


class _Accumulator:
    """Rows added one by one (a Builder) and partial profiles of many rows (merged as they come)."""

    def __init__(self, kinds: Mapping[str, str]):
        self.rows = profile.Builder(kinds)
        self.parts: Optional[profile.DatasetProfile] = None

    def add_part(self, part: profile.DatasetProfile) -> None:
        self.parts = part if self.parts is None else profile.merge([self.parts, part])

    def result(self) -> profile.DatasetProfile:
        rows = self.rows.result()
        if self.parts is None:
            return rows
        return self.parts if not rows.rows else profile.merge([self.parts, rows])


class ProfileCombineFn(beam.CombineFn):
    """Typed rows ({column: int | float | bytes}; absent = missing) or profiles of many typed rows
    (DatasetProfile, e.g. a file's) -> DatasetProfile. None inputs count nothing."""

    def __init__(self, kinds: Mapping[str, str]):
        self._kinds = dict(kinds)

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator(self._kinds)

    def add_input(self, accumulator: _Accumulator, row: Optional[Mapping[str, Any] | profile.DatasetProfile]
                  ) -> _Accumulator:
        if isinstance(row, profile.DatasetProfile):
            accumulator.add_part(row)
        elif row is not None:
            accumulator.rows.add(row)
        return accumulator

    def merge_accumulators(self, accumulators) -> _Accumulator:
        first, *rest = list(accumulators)
        first.rows.merge([other.rows for other in rest])
        for other in rest:
            if other.parts is not None:
                first.add_part(other.parts)
        return first

    def extract_output(self, accumulator: _Accumulator) -> profile.DatasetProfile:
        return accumulator.result()


def _write(span_and_profile: tuple[int, profile.DatasetProfile], profile_uri: str) -> str:
    span, result = span_and_profile
    result.source = f"span {span}"
    storage.makedirs(profile_uri)
    path = os.path.join(profile_uri, profile.profile_file(span))
    storage.write_text(path, result.to_json())
    return path


class SpanProfiles(beam.PTransform):
    """(span, typed row) pairs -> one profile-span-<N>.json per span in `spans`, written under profile_uri."""

    def __init__(self, kinds: Mapping[str, str], spans: Sequence[int], profile_uri: str):
        super().__init__()
        self._kinds, self._spans, self._uri = dict(kinds), sorted(set(spans)), profile_uri

    def expand(self, rows):
        every_span = rows.pipeline | "EverySpan" >> beam.Create([(span, None) for span in self._spans])
        return ((rows, every_span)
                | "WithEverySpan" >> beam.Flatten()
                | "ProfilePerSpan" >> beam.CombinePerKey(ProfileCombineFn(self._kinds))
                | "WriteProfiles" >> beam.Map(_write, self._uri))


def check_span_profiles(profile_uri: str, spans: Sequence[int]) -> dict[int, profile.DatasetProfile]:
    """The artifact's profiles; raises MonitorError naming any span without one (never skipped)."""
    found = profile.read_span_profiles(profile_uri)
    absent = sorted(set(spans) - set(found))
    if absent:
        raise profile.MonitorError(f"ingest: no profile for span(s) {absent} in {profile_uri}; every span read "
                                   f"must be profiled (found {sorted(found)})")
    return found
