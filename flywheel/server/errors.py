"""The server's errors, answered as TF Serving answers them: `{"error": message}` with TF Serving's HTTP status.

Every layer of the server raises these; a TensorFlow error that reaches a request (the graph refused the request's
values) becomes one through `from_exception`, with the status TF Serving gives its error code.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)


class ServingError(Exception):
    """An error answered as TF Serving answers it: `{"error": message}` with `status` (TF Serving's code)."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidArgument(ServingError):
    status = 400


class NotFound(ServingError):
    status = 404


class BodyTooLarge(ServingError):
    status = 413


class Unimplemented(ServingError):
    status = 501


# TF Serving's HTTP status of a TensorFlow error code (http_server.cc's ToHTTPStatusCode): the 4xx ones.
CLIENT_ERROR_CODES = {"CANCELLED": 499, "INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "ALREADY_EXISTS": 409,
                      "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400,
                      "ABORTED": 409, "OUT_OF_RANGE": 400, "UNAUTHENTICATED": 401}
_TENSORFLOW_CONTEXT = re.compile(r"\s*\[\[\{\{.*?\}\}\]\]|\{\{(?:function_)?node [^}]*\}\}", re.DOTALL)


def from_exception(error: Exception, request: str, request_id: str) -> ServingError:
    """The answer to an exception that is no ServingError: a TensorFlow error TF Serving answers with a 4xx (the
    request's values were refused: InvalidArgument, OutOfRange...) keeps its message without the graph's node
    names; anything else is a 500 naming only the request. The server's log has the detail. request: what was
    asked (`POST /v1/models/taxi:predict`), for that log."""
    # TensorFlow: seconds to import; a request that got this far has loaded it already
    import tensorflow as tf

    codes = {getattr(tf.errors, name): status for name, status in CLIENT_ERROR_CODES.items()}
    status = codes.get(error.error_code, 500) if isinstance(error, tf.errors.OpError) else 500
    if status < 500:
        logger.warning("serve: %s (request %s) refused by TensorFlow: %s", request, request_id, error.message)
        answer = ServingError(tensorflow_message(error.message))
        answer.status = status
        return answer
    logger.warning("serve: %s (request %s) failed", request, request_id, exc_info=error)
    return ServingError(f"Internal error: the server failed to answer request {request_id}; its log has the detail")


def tensorflow_message(message: str) -> str:
    """A TensorFlow error about the request's values, without the graph's function and node names TensorFlow
    appends (`[[{{node ParseExample/ParseExampleV2}}]]`): they name the model's internals, not the request."""
    return _TENSORFLOW_CONTEXT.sub("", message).strip()
