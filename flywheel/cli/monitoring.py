"""`flywheel monitor`: arguments -> `flywheel.api.monitoring` -> text and exit status (like diff's)."""

from __future__ import annotations

from typing import Any

from flywheel.api.monitoring import MonitorResult, monitor
from flywheel.cli import exits
from flywheel.cli.text import err, show


def monitor_lines(result: MonitorResult) -> list[str]:
    drifted = result.drifted
    labels = [name for name, f in ((result.details.get("label_drift") or {}).get("features") or {}).items()
              if f.get("drift")]
    verdict = ("DRIFT in " + ", ".join(drifted) if drifted else "no drift") + \
        ("; label drift in " + ", ".join(labels) if labels else "")
    out = [f"flywheel monitor: {verdict} "
           f"(baseline {result.rows.get('baseline', 0):,} rows, current {result.rows.get('current', 0):,} rows)"
           + (f"; report {result.report}" if result.report else "")]
    if result.details.get("baseline_from"):
        out.append(f"  baseline: {result.details['baseline_from']}")
    if result.details.get("schema_from"):
        out.append(f"  schema: {result.details['schema_from']}")
    for what, part in (("prediction drift", result.details.get("prediction")),
                       ("label drift", result.details.get("label_drift"))):
        if (part or {}).get("skipped"):
            out.append(f"  {what} not checked: {part['skipped']}")
    return out


def cmd_monitor(args: Any) -> int:
    result = monitor(args.baseline, args.current, schema=args.schema, report_dir=args.report,
                     save_profile=args.save_profile, reference_metrics=args.reference_metrics,
                     label_column=args.label_column, reference_predictions=args.reference_predictions)
    show(args, result, monitor_lines)
    skipped = (result.details.get("performance") or {}).get("skipped")
    if skipped:
        err(f"performance not computed: {skipped}")
    return exits.FAILED if result.drift_detected else exits.OK
