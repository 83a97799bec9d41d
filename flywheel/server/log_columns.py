"""The request log's columns: the one place their names and values are written down.

The server's request log (`flywheel.server.request_log`) writes them; the monitor and the drift checks
(`flywheel.monitoring`) read a log through them: the request columns describe the request, not the data (never
compared as features), and the rollout columns say whether a client was answered with the row. Types, as the
Parquet files hold them: request_id string, row_index int32, time timestamp[us, UTC], model string,
model_version int64, signature_name string, latency_ms float64, rollout_role string, request_route string,
status int32, error string (null when answered), then one column per input feature, then prediction (float64, or
a list of float64 for a multi-output model; null for a failed request).
"""

REQUEST_ID, ROW_INDEX, TIME, MODEL, MODEL_VERSION, SIGNATURE_NAME, LATENCY_MS = (
    "request_id", "row_index", "time", "model", "model_version", "signature_name", "latency_ms")
REQUEST_LOG_COLUMNS = (REQUEST_ID, ROW_INDEX, TIME, MODEL, MODEL_VERSION, SIGNATURE_NAME, LATENCY_MS)
# What the log says of a request during a rollout: its role, HTTP status, error message and how it was routed.
ROLLOUT_ROLE, STATUS, ERROR, REQUEST_ROUTE = "rollout_role", "status", "error", "request_route"
ROLLOUT_COLUMNS = (ROLLOUT_ROLE, STATUS, ERROR, REQUEST_ROUTE)
PREDICTION = "prediction"

# rollout_role's values (null without a running rollout): the version that answers by default, the candidate that
# answers its share, the candidate that gets copies of requests stable answered (never a client's answer).
STABLE, CANARY, SHADOW = "stable", "canary", "shadow"
# request_route's values: the default route (the split, while a rollout runs) or a version or label the request
# named, which bypasses the split.
DEFAULT_ROUTE, VERSION_ROUTE, LABEL_ROUTE = "default", "version", "label"
