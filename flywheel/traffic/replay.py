"""Replaying a span as traffic: its rows, read the way Ingest reads them and without the label, sent as TF
Serving REST `:predict` requests (`{"instances": [...]}`) at a target rate, several at a time.

Rows are typed by the pipeline's schema through Ingest's own parser, so a row Ingest would quarantine is
skipped and counted, never sent. Only the model's input features are sent: those the server's
`GET <url>/metadata` lists for its default signature (TF Serving's metadata API), or the ones given. A row
that lacks one of them is skipped and counted (the server would answer 400). With an id column, each request
carries one row and `X-Request-Id: <the row's id>`, which the server logs, so labels that arrive later join
to the logged prediction by that id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import re
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from flywheel.data import inputs, parsing
from flywheel.monitoring import drift
from flywheel.store.warmup import DEFAULT_SIGNATURE


class ReplayError(ValueError):
    """A replay that cannot start: bad arguments, unreadable data, a server that does not describe its model."""


@dataclasses.dataclass(frozen=True)
class Batch:
    rows: list[dict[str, Any]]
    request_id: Optional[str]


def wait_for_server(url: str, wait_s: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Returns once something answers HTTP at `url` (any status), trying again while connections are refused
    for up to wait_s seconds: `flywheel serve` (like TF Serving) listens only once its models are loaded, so a
    server started a moment ago answers when it is ready. ReplayError naming the URL when nothing answered."""
    import httpx  # the HTTP client: a quarter second to import, only for the commands that send requests

    if wait_s < 0:
        raise ReplayError(f"replay: --wait: expected seconds >= 0, got {wait_s:g}")
    deadline = clock() + wait_s
    while True:
        try:
            httpx.get(url, timeout=10.0)
            return
        except httpx.ConnectError as e:
            why = _in_words(e)
        except httpx.HTTPError as e:
            raise ReplayError(f"replay: no answer from {url}: {no_answer(e)}") from None
        remaining = deadline - clock()
        if remaining <= 0:
            waited = f"after waiting {wait_s:g} s" if wait_s else "(--wait 0: not waited for)"
            raise ReplayError(f"replay: nothing answers at {url} {waited}: {why}; the server may not be up yet "
                              "(`flywheel serve` prints a 'ready' line once it answers; --wait sets how long replay "
                              "waits for it)")
        time.sleep(min(0.2, remaining))  # a connection attempt every 0.2 s until the deadline


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0]


def _in_words(error: BaseException) -> str:
    """A connection error's reason in words: "connection refused", not "[Errno 111] Connection refused"."""
    words = re.sub(r"^\[Errno -?\d+\]\s*", "", _first_line(error)).strip()
    return (words[:1].lower() + words[1:]) if words else "connection refused"


def no_answer(error: Exception) -> str:
    """What went wrong with an HTTP call, in words (httpx's error classes named by what they mean)."""
    import httpx  # (see wait_for_server)

    kinds = [(httpx.ConnectTimeout, "connecting timed out"), (httpx.ReadTimeout, "no answer within the timeout"),
             (httpx.TimeoutException, "timed out"), (httpx.ConnectError, "could not connect"),
             (httpx.RemoteProtocolError, "the server closed the connection or broke HTTP"),
             (httpx.UnsupportedProtocol, "not an http:// or https:// URL"), (httpx.InvalidURL, "not a valid URL")]
    kind = next((words for cls, words in kinds if isinstance(error, cls)), "the request failed")
    detail = _first_line(error)
    return f"{kind} ({detail})" if detail else kind


def model_inputs(url: str, timeout: float = 10.0) -> list[str]:
    """The input names of the model's default signature, from TF Serving's `GET <url>/metadata`."""
    import httpx  # (see wait_for_server)

    metadata = f"{url.rstrip('/')}/metadata"
    try:
        response = httpx.get(metadata, timeout=timeout)
    except httpx.HTTPError as e:
        raise ReplayError(f"replay: no answer from {metadata}: {no_answer(e)}") from None
    try:
        response.raise_for_status()
        names = response.json()["metadata"]["signature_def"]["signature_def"][DEFAULT_SIGNATURE]["inputs"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        found = (f"it answered {response.status_code}" if response.is_error
                 else f"its answer lacks metadata.signature_def.signature_def.{DEFAULT_SIGNATURE}.inputs")
        raise ReplayError(f"replay: expected TF Serving's model metadata at {metadata}, but {found}: check the model "
                          "URL, or give the model's inputs with --features") from None
    return sorted(names)


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


@dataclasses.dataclass(frozen=True)
class Source:
    """The rows to replay, found before any request: the schema's columns and labels, the span's files."""

    schema_path: str
    columns: list[Any]
    labels: tuple[str, ...]
    files: tuple[str, ...]


def find_source(data: str, schema_path: str, id_column: Optional[str]) -> Source:
    """The latest span of `data` (a span folder, a file, or a folder of span-N folders) and the schema's columns;
    ReplayError naming what is missing."""
    try:
        columns = [c for c in parsing.columns_from_schema(parsing.load_schema(schema_path))
                   if c.name != id_column]
        labels = drift.Policy.from_schema(schema_path).labels
        resolved = inputs.resolve_input(data)
    except (ValueError, OSError) as e:
        raise ReplayError(str(e).replace("ingest:", "replay:", 1)) from e
    return Source(schema_path, columns, labels, resolved.files)


def read_batches(source: Source, features: Sequence[str], id_column: Optional[str], batch: int,
                 counts: dict[str, Any]) -> Iterator[Batch]:
    """Requests' rows from the source's files. counts gets rows_read, rows_skipped and the first skip reasons as
    it goes."""
    columns, labels, schema_path = list(source.columns), source.labels, source.schema_path
    unknown = sorted(set(features) - {c.name for c in columns if c.name not in labels})
    if unknown:
        raise ReplayError(f"replay: features {unknown} are not serving features of the schema {schema_path} "
                          f"(labels: {list(labels)})")
    if id_column:
        columns.append(parsing.Column(id_column, parsing.BYTES, True))
    pending: list[dict[str, Any]] = []
    for path in source.files:
        try:
            parsed = parsing.file_rows(path, columns, (), (("all", 1),))
            for number, row in enumerate(parsed, start=1):
                counts["rows_read"] += 1
                reason = row.reason if isinstance(row, parsing.Rejected) else None
                if reason is None:
                    lacking = [f for f in features if f not in row.values]
                    reason = f"no value for feature(s) {lacking}" if lacking else None
                if reason is not None:
                    counts["rows_skipped"] += 1
                    if len(counts["first_skipped"]) < 3:
                        counts["first_skipped"].append(f"{path} row {number}: {reason}")
                    continue
                pending.append({f: _text(row.values[f]) for f in features})
                if id_column:
                    yield Batch(pending, _text(row.values[id_column]))
                    pending = []
                elif len(pending) >= batch:
                    yield Batch(pending, None)
                    pending = []
        except parsing.IngestError as e:
            raise ReplayError(str(e).replace("ingest:", "replay:", 1)) from e
    if pending:
        yield Batch(pending, None)


async def _send(batches: Iterator[Batch], url: str, rate: Optional[float], concurrency: int,
                timeout: float) -> dict[str, Any]:
    import httpx  # (see wait_for_server)

    endpoint = f"{url.rstrip('/')}:predict"
    by_status: dict[str, int] = {}
    latencies: list[float] = []
    rows_sent = 0
    slots = itertools.count()
    started = time.monotonic()

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal rows_sent
        while True:
            item = next(batches, None)  # no await until the slot is taken: one reader at a time
            slot = next(slots)
            if item is None:
                return
            if rate:
                delay = started + slot / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            headers = {"X-Request-Id": item.request_id} if item.request_id is not None else {}
            sent = time.monotonic()
            try:
                response = await client.post(endpoint, json={"instances": item.rows}, headers=headers)
                status = str(response.status_code)
            except httpx.TimeoutException:
                status = "timed out"
            except httpx.HTTPError:
                status = "no answer"
            latencies.append((time.monotonic() - sent) * 1000.0)
            by_status[status] = by_status.get(status, 0) + 1
            rows_sent += len(item.rows)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    sent = sum(by_status.values())
    ok = sum(n for s, n in by_status.items() if s.isdigit() and 200 <= int(s) < 300)
    percentiles = {}
    if latencies:
        values = np.percentile(np.array(latencies), [50, 90, 99])
        percentiles = {"p50": round(float(values[0]), 3), "p90": round(float(values[1]), 3),
                       "p99": round(float(values[2]), 3), "max": round(max(latencies), 3)}
    return {"requests_sent": sent, "ok": ok, "failed": sent - ok, "by_status": dict(sorted(by_status.items())),
            "rows_sent": rows_sent, "elapsed_s": round(elapsed, 3),
            "achieved_rate": round(sent / elapsed, 2) if elapsed > 0 else 0.0, "latency_ms": percentiles}


def _run(coroutine):
    """asyncio.run, also from a thread whose event loop is already running (a Jupyter cell): then the replay
    runs on its own loop in a worker thread, and this call waits for it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def replay(data: str, url: str, schema_path: str, *, features: Optional[Sequence[str]] = None,
           rate: Optional[float] = None, id_column: Optional[str] = None, batch: int = 1, concurrency: int = 8,
           timeout: float = 30.0, wait_s: float = 60.0) -> dict[str, Any]:
    """Sends the rows of `data`'s latest span to `url` (e.g. http://127.0.0.1:8501/v1/models/taxi); returns counts
    (rows read, skipped, sent; requests ok, failed and by status), the achieved rate (requests/s) and latency
    percentiles (ms). Waits up to wait_s seconds for a server that does not answer yet (see wait_for_server)."""
    if rate is not None and rate <= 0:
        raise ReplayError(f"replay: rate: expected requests per second > 0, got {rate}")
    if batch < 1 or concurrency < 1:
        raise ReplayError(f"replay: batch and concurrency: expected >= 1, got {batch} and {concurrency}")
    if id_column and batch != 1:
        raise ReplayError(f"replay: --id-column sends one row per request (its id is the request id); got batch "
                          f"{batch}")
    source = find_source(data, schema_path, id_column)
    wait_for_server(url, wait_s)
    names = list(features) if features else model_inputs(url)
    counts: dict[str, Any] = {"rows_read": 0, "rows_skipped": 0, "first_skipped": []}
    batches = read_batches(source, names, id_column, batch, counts)
    first = next(batches, None)  # reads the header: a missing file or column fails before any request
    if first is None:
        raise ReplayError(f"replay: {data} holds no row that can be sent ({counts['rows_skipped']} skipped: "
                          f"{counts['first_skipped']})")
    sent = _run(_send(itertools.chain([first], batches), url, rate, concurrency, timeout))
    return {**counts, **sent, "features": names, "url": url}
