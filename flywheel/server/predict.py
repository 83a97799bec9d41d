"""One predict request, from its body to its answer and its request-log row: what the server's predict route and
the shadow's copies (`shadow.Shadow`) both run.

`parse` reads a body for a servable (the common body, rows of the default signature, decodes straight into
columns; any other is parsed, and accepted or refused, by TF Serving's rules in `codec`), filling a
`PredictRequest` step by step, so a request that fails half way still says what it had (its signature, its rows)
when it is logged. The caller runs the request's columns (the server through its batcher, the shadow directly),
then `answer` encodes the outputs as TF Serving does and `log` hands the request to the request log.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from flywheel.server import codec
from flywheel.server.models import Servable
from flywheel.server.signatures import Signature
from flywheel.store import warmup

logger = logging.getLogger(__name__)


class PredictRequest:
    """What is known of one predict request so far: the body's JSON document (None when the fast path decoded
    it), the signature, the format (codec.ROW or COLUMNAR), {input: column}, the rows as sent, and the batch
    group (`codec.batch_group`; None for the common request)."""

    __slots__ = ("doc", "signature", "fmt", "columns", "rows", "group")

    def __init__(self, doc: Any = None):
        self.doc = doc
        self.signature: Optional[Signature] = None
        self.fmt = ""
        self.columns: dict[str, Any] = {}
        self.rows: Optional[list] = None
        self.group: Any = None

    @property
    def signature_name(self) -> str:
        """The signature's name, "" before it is known."""
        return "" if self.signature is None else self.signature.name

    def logged_rows(self) -> list:
        """The rows for the request log: as parsed, else as the body has them (`rows_of`)."""
        return self.rows if self.rows is not None else rows_of(self.doc)


def parse(servable: Servable, body: bytes, request: PredictRequest, keep_document: bool = False) -> None:
    """Parses a predict body for `servable` into `request`. keep_document: the general path even for the common
    body, so `request.doc` holds the document (a shadow copy needs it)."""
    signature = None if keep_document else servable.signatures.get(warmup.DEFAULT_SIGNATURE)
    parsed = codec.parse_rows(body, signature) if signature is not None else None
    if parsed is None:
        request.doc = codec.parse_json(body)
        parse_document(servable, request)
        return
    request.signature, request.fmt = signature, codec.ROW
    request.columns, request.rows = parsed


def parse_document(servable: Servable, request: PredictRequest) -> None:
    """Parses `request.doc` (a predict body's JSON) for `servable` into `request`."""
    request.signature = servable.signature(codec.signature_name(request.doc))
    request.fmt, request.columns, request.rows = codec.parse_predict(request.doc, request.signature)
    # Nested or irregular inputs join only their like in a batch.
    request.group = codec.batch_group(request.columns, len(request.rows))


def answer(request: PredictRequest, outputs: dict[str, Any]) -> bytes:
    """The answer's JSON body, as TF Serving writes it for the request's format."""
    return codec.encode_predict(request.fmt, outputs)


def logged_predictions(request_log: Any, outputs: dict[str, Any]) -> Any:
    """The predictions as the request log takes them: a numeric single output's rows as they are (numpy) for a
    log that takes `typed_rows`, else one JSON value per row (`codec.row_predictions`)."""
    if getattr(request_log, "typed_rows", False) and len(outputs) == 1:
        array = next(iter(outputs.values()))
        if array.dtype.kind in "fiu" and array.ndim:
            return array
    return codec.row_predictions(outputs)


def log(request_log: Any, request_id: str, model: str, version: Optional[int], signature: str, rows: list,
        predictions: Any, latency_ms: float, role: Optional[str] = None, status: int = 200,
        error: Optional[str] = None, *, route: Optional[str] = None, body_bytes: Optional[int] = None) -> None:
    """Hands one request to the request log (`server.RequestLog`), after its response is sent; a failing logger is
    reported, never the request's failure. predictions: None for a failed request. route: how the request named
    its version (`routing.named`), passed on only when it named one; body_bytes: the body's length, passed on
    when given (to a log that `takes_body_bytes`)."""
    try:
        if not getattr(request_log, "typed_rows", False):
            rows = codec.row_dicts(rows)
        if role is None and status == 200 and route is None:
            if body_bytes is None:
                request_log.log(request_id, model, version, signature, rows, predictions, latency_ms)
            else:
                request_log.log(request_id, model, version, signature, rows, predictions, latency_ms,
                                body_bytes=body_bytes)
            return
        named = {} if route is None else {"route": route}
        if body_bytes is not None:
            named["body_bytes"] = body_bytes
        request_log.log(request_id, model, version, signature, rows,
                        [None] * len(rows) if predictions is None else predictions, latency_ms, role=role,
                        status=status, error=error, **named)
    except Exception:  # the logger's own errors are its business; serving goes on
        logger.exception("serve: request log failed for request %s", request_id)


def rows_of(doc: Any) -> list[dict]:
    """The rows of a predict body as sent, where it has them (for logging a failed request): `instances`
    objects, or `inputs` columns of equal length; else one empty row (the request is still counted)."""
    if isinstance(doc, dict):
        instances = doc.get("instances")
        if isinstance(instances, list) and instances and all(isinstance(r, dict) for r in instances):
            return instances
        inputs = doc.get("inputs")
        if isinstance(inputs, dict) and inputs and all(isinstance(c, list) for c in inputs.values()):
            sizes = {len(c) for c in inputs.values()}
            if len(sizes) == 1 and sizes != {0}:
                return [dict(zip(inputs, values, strict=True)) for values in zip(*inputs.values(), strict=True)]
    return [{}]
