"""Values written in two layers (the reader may not import the writer's heavy module) must agree."""

import inspect

from flywheel.cli import parser
from flywheel.rollout import analysis
from flywheel.server import log_columns, request_log


def test_the_analysis_names_the_servers_flush_interval_and_default_route():
    flush = inspect.signature(request_log.RequestLog).parameters["flush_interval_s"].default
    assert analysis.SERVER_FLUSH_INTERVAL_S == flush
    assert analysis.DEFAULT_ROUTE == log_columns.DEFAULT_ROUTE


def test_serves_byte_budget_is_the_request_logs():
    assert parser.LOG_MAX_PENDING_MB * 2**20 == request_log.DEFAULT_MAX_PENDING_BYTES
