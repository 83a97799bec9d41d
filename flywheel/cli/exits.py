"""The exit status of every command, in one table: `--help` prints it (`epilog`), the handlers return its codes,
and the README's exit-status table is checked against it.

A meaning's line breaks are where `--help` breaks it.
"""

from __future__ import annotations

OK, FAILED, USAGE, STOPPED, LOCKED = 0, 1, 2, 3, 4

_SIMPLE = ((OK, "done"), (USAGE, "bad arguments, unknown pipeline, or an error the message names"))
_ROLLOUT = (
    (OK, "done (status: the state was read; analyze: the candidate is to be promoted)"),
    (FAILED, "analyze: the candidate is to be rolled back"),
    (STOPPED, "analyze: not enough traffic yet, keep waiting\n(analyze --scheduled: 0 whenever the analysis ran and "
              "its decision was applied, and when no rollout is\nin progress)"),
    (USAGE, "bad arguments, or a rollout rule the message names (one rollout at a time, a candidate that is not a\n"
            "complete version or is the stable one, promote/rollback with no rollout running)"),
)

EXITS: dict[str, tuple[tuple[int, str], ...]] = {
    "run": (
        (OK, "the run finished (or nothing changed since the last one: nothing to do)"),
        (FAILED, "a component failed (the error names it)"),
        (USAGE, "bad arguments, unknown pipeline, a bad input location, or an output directory this user may not "
                "write"),
        (STOPPED, "the data validation gate stopped the run (its report's path is printed)"),
        (LOCKED, "another flywheel process holds the output directory"),
    ),
    "retrain": (
        (OK, 'done: nothing new or no drift (nothing run), or the pipeline ran (pushed or not, see "pushed")'),
        (FAILED, "a component failed"),
        (USAGE, "bad arguments, unknown pipeline, no span-N folders in --data, or an output directory this user may "
                "not write"),
        (STOPPED, "the data validation gate stopped the retraining run"),
        (LOCKED, "another flywheel process holds the output directory"),
    ),
    "ingest": (
        (OK, "ingested"),
        (FAILED, "above the quarantine limit, or a required column is missing"),
        (USAGE, "bad arguments or input location"),
    ),
    "monitor": (
        (OK, "no drift"),
        (FAILED, "drift"),
        (USAGE, "error (missing file, columns that do not match)"),
    ),
    "simulate": _SIMPLE,
    "lineage": _SIMPLE,
    "status": _SIMPLE,
    "compile": (
        (OK, "compiled"),
        (FAILED, "the compiler failed (the message says why)"),
        (USAGE, "bad arguments, unknown pipeline, or an output path that cannot be written (.yaml, .yml or .json)"),
    ),
    "replay": (
        (OK, "every request answered 2xx"),
        (FAILED, "some requests failed (counted by status)"),
        (USAGE, "bad arguments, unreadable data, no server answering within --wait, or a server that does not "
                "describe its\nmodel"),
    ),
    "logs join": (
        (OK, "joined (unmatched rows and duplicates are counted in the result)"),
        (USAGE, "bad arguments, missing key or label column, or joined rows that would lack a column Ingest requires"),
    ),
    "serve": (
        (OK, "stopped by SIGINT or SIGTERM"),
        (USAGE, "bad arguments, a serving folder that does not exist, or an address that cannot be listened on"),
    ),
    "predict": (
        (OK, "scored (bad rows quarantined)"),
        (FAILED, "a file was refused (unreadable, a required column missing) or rows did not add up"),
        (USAGE, "bad arguments, unknown pipeline, a bad input location, an unknown model or version, or a non-empty "
                "--output"),
    ),
    "rollout": _ROLLOUT,
    "privacy check": (
        (OK, "k and l reach the policy's thresholds"),
        (FAILED, "k or l is below its threshold (the report names the smallest classes and what would lift k)"),
        (USAGE, "bad arguments, unknown pipeline, unreadable data, or a policy the message names (a bad role, an "
                "unknown\ncolumn, a bad threshold)"),
    ),
}

# What --help says above and below a command's table, when not only "exit status:".
_HEADINGS = {"monitor": "exit status (like diff):"}
_NOTES = {"serve": 'stderr: a line per version loaded or unloaded and per rollout change, "ready" once requests are '
                   'answered (the\nmodels loaded, the port listening), "stopped" at the end; errors come before any '
                   "other line."}


def epilog(command: str) -> str:
    """The `exit status:` text `flywheel COMMAND --help` ends with."""
    lines = [_HEADINGS.get(command, "exit status:")]
    for code, meaning in EXITS[command]:
        lines.append(f"  {code}  " + meaning.replace("\n", "\n     "))
    text = "\n".join(lines)
    return f"{text}\n\n{_NOTES[command]}" if command in _NOTES else text
