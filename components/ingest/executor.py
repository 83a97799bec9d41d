"""Ingest's executor: resolve input, run the Beam ingestion, record counts, enforce the limit."""

from __future__ import annotations

import json
import os
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from flywheel.components.ingest import beam_ingest, quarantine, run, spec
from flywheel.data import inputs, parsing
from flywheel.monitoring import profile_beam


def resolved_input(exec_properties: dict[str, Any]) -> inputs.ResolvedInput:
    """The driver's resolution when it ran; otherwise (e.g. Kubeflow) resolve now."""
    if exec_properties.get(spec.RESOLVED_INPUT_KEY):
        return inputs.ResolvedInput.from_json(exec_properties[spec.RESOLVED_INPUT_KEY])
    return inputs.resolve_input(exec_properties[spec.INPUT_BASE_KEY], exec_properties[spec.SPAN_KEY],
                                exec_properties[spec.NUM_SPANS_KEY])


def check_expected_fingerprint(resolved: inputs.ResolvedInput, exec_properties: dict[str, Any]) -> None:
    """The data must be what the decision upstream read: a span rewritten in between fails the run."""
    expected = exec_properties.get(spec.EXPECTED_FINGERPRINT_KEY) or ""
    if expected and expected != resolved.fingerprint:
        raise parsing.IngestError(
            f"ingest: {spec.EXPECTED_FINGERPRINT_KEY}: expected data fingerprint {expected[:12]}…, but spans "
            f"{list(resolved.spans)} under {exec_properties[spec.INPUT_BASE_KEY]} now have "
            f"{resolved.fingerprint[:12]}… (the data changed after it was decided on); rerun to decide again")


def ingest_options(exec_properties: dict[str, Any], schema_uri: str) -> beam_ingest.IngestOptions:
    schema = parsing.load_schema(io_utils.get_only_uri_in_dir(schema_uri))
    columns = parsing.columns_from_schema(schema)
    key_columns = tuple(c for c in (exec_properties.get(spec.SPLIT_KEY_COLUMNS_KEY) or "").split(",") if c)
    unknown = sorted(set(key_columns) - {c.name for c in columns})
    if unknown:
        raise parsing.IngestError(f"ingest: split_key_columns {unknown} are not in the schema; "
                                  f"columns: {[c.name for c in columns]}")
    return beam_ingest.IngestOptions(columns=tuple(columns),
                                     splits=tuple(parsing.parse_splits(exec_properties[spec.SPLITS_KEY])),
                                     split_key_columns=key_columns,
                                     quarantine_limit=float(exec_properties[spec.QUARANTINE_LIMIT_KEY]))


def record_properties(examples: types.Artifact, quarantined: types.Artifact, counts: beam_ingest.IngestCounts,
                      resolved: inputs.ResolvedInput, split_names: list[str]) -> None:
    examples.split_names = artifact_utils.encode_split_names(split_names)
    examples.span = max(resolved.spans)
    examples.set_string_custom_property("payload_format", "FORMAT_TF_EXAMPLE")
    examples.set_string_custom_property("file_format", "tfrecords_gzip")
    for artifact in (examples, quarantined):
        artifact.set_int_custom_property(spec.ROWS_READ, counts.rows_read)
        artifact.set_string_custom_property(spec.ROWS_WRITTEN, json.dumps(counts.rows_written))
        artifact.set_int_custom_property(spec.ROWS_QUARANTINED, counts.rows_quarantined)
        artifact.set_int_custom_property(spec.PHYSICAL_ROWS, counts.physical_rows)
        artifact.set_string_custom_property(spec.FINGERPRINT, resolved.fingerprint)
        artifact.set_string_custom_property(spec.SPANS, ",".join(str(s) for s in resolved.spans))
    for name, n in counts.rows_written.items():
        examples.set_int_custom_property(f"rows_written_{name}", n)


class Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(output_dict[spec.EXAMPLES_KEY])
        quarantined = artifact_utils.get_single_instance(output_dict[spec.QUARANTINE_KEY])
        schema = artifact_utils.get_single_instance(input_dict[spec.SCHEMA_KEY])
        resolved = resolved_input(exec_properties)
        check_expected_fingerprint(resolved, exec_properties)
        options = ingest_options(exec_properties, schema.uri)
        profile = artifact_utils.get_single_instance(output_dict[spec.PROFILE_KEY])
        counts = run.run_ingest(resolved, options, examples.uri, quarantined.uri, self._get_tmp_dir(),
                                self._make_beam_pipeline, profile.uri, exec_properties[spec.INPUT_BASE_KEY])
        record_properties(examples, quarantined, counts, resolved, [n for n, _ in options.splits])
        profiles = profile_beam.check_span_profiles(profile.uri, resolved.spans)
        profile.set_string_custom_property(spec.SPANS, ",".join(str(s) for s in sorted(profiles)))
        # A failed execution's outputs are deleted: keep the quarantine beside them.
        kept_dir = os.path.join(os.path.dirname(os.path.dirname(quarantined.uri)), spec.FAILED_QUARANTINE_DIR,
                                os.path.basename(quarantined.uri))
        try:
            quarantine.check_quarantine_limit(counts, options.quarantine_limit, quarantined.uri,
                                               os.path.join(kept_dir, spec.QUARANTINE_FILE))
        except parsing.IngestError:
            quarantine.preserve_quarantine(quarantined.uri, kept_dir)
            raise
