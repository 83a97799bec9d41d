"""Shadow copies: during a shadow rollout stable answers, and the candidate gets a copy of each request after the
answer is sent. The copy runs the server's own predict path (`predict`: parse, run, encode) and its errors are
mapped as the server maps them (`errors`); its answer goes only to the request log, with role `shadow`."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Optional

from flywheel.server import codec, errors, predict
from flywheel.server.errors import ServingError
from flywheel.server.log_columns import SHADOW
from flywheel.server.models import Servable
from flywheel.store import warmup

logger = logging.getLogger(__name__)

DEFAULT_SHADOW_QUEUE = 1000


class Shadow:
    """Sends the candidate copies of requests stable answered, off the request path: `submit` only puts the
    request on a bounded queue (a full queue drops it, counted in `dropped`); one thread runs it through the
    predict path for the candidate and logs the answer (role `shadow`, with status and error) to the request
    log. Nothing it does reaches the client. run: one TensorFlow call (`models.run_signature`)."""

    def __init__(self, request_log: Any, run: Callable, max_pending: int = DEFAULT_SHADOW_QUEUE):
        self._log, self._run = request_log, run
        self.sent = self.dropped = self.failed = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._work, name="flywheel-shadow", daemon=True)
        self._thread.start()

    def submit(self, servable: Servable, doc: Any, request_id: str, rows: list) -> None:
        try:
            self._queue.put_nowait((servable, doc, request_id, rows))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: Optional[float] = 30.0) -> None:
        """Runs the copies already queued, then stops the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._answer(*item)
            except Exception:  # a shadow never fails anything: its own errors are logged
                logger.exception("serve: shadow copy of request %s failed", item[2])

    def _answer(self, servable: Servable, doc: Any, request_id: str, rows: list) -> None:
        started = time.perf_counter()
        request = predict.PredictRequest(doc)
        status, error, predictions = 200, None, None
        try:
            predict.parse_document(servable, request)
            outputs = self._run(request.signature, request.columns)
            predict.answer(request, outputs)  # what the candidate would have answered: refused as it would be
            predictions = predict.logged_predictions(self._log, outputs)
        except Exception as e:  # as the server answers it: its own errors, or TensorFlow's by their code
            failure = e if isinstance(e, ServingError) else errors.from_exception(
                e, f"shadow copy to {servable.model} version {servable.version}", request_id)
            status, error = failure.status, failure.message
        if status == 200:
            self.sent += 1
        else:
            self.failed += 1
        if self._log is not None:
            signature = request.signature_name or codec.signature_name(doc) or warmup.DEFAULT_SIGNATURE
            predict.log(self._log, request_id, servable.model, servable.version, signature, rows or [{}],
                        predictions if rows else None, (time.perf_counter() - started) * 1000.0, SHADOW, status,
                        error)
