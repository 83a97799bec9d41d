"""Data errors that come back from a Beam pipeline's workers, told apart from the pipeline's own failures."""

from __future__ import annotations

from typing import Optional

from flywheel.batch.model_version import PredictError
from flywheel.data.parsing import IngestError


def data_error(error: BaseException) -> Optional[str]:
    """The one-line message of a data error raised inside the Beam pipeline (a worker process sends it back
    inside a traceback's text), or None when the error is not one of ours."""
    text = str(error)
    for marker in ("PredictError: ", "IngestError: "):
        if marker in text:
            text = text[text.rindex(marker) + len(marker):]
            break
    else:
        if not isinstance(error, (PredictError, IngestError)):
            return None
    return text.splitlines()[0].split(" [while running")[0].strip()
