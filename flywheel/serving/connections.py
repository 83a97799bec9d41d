"""Connection limits of `flywheel serve`: uvicorn's own, and the two uvicorn lacks.

uvicorn limits requests in progress and open connections together (`limit_concurrency`: past it a request is
answered 503 and its connection closed) and closes a connection idle after an answer (`timeout_keep_alive`).
It sets no deadline on a request still being read and no size on its head: a client that opens a connection and
sends nothing, or a header a byte at a time, holds the connection (a file handle) for ever. `protocol` adds both
to uvicorn's httptools protocol:
- read deadline: from the moment a connection opens, or its last answer is sent, the client has `read_timeout`
  seconds to send a whole request (head and body), else the connection is closed;
- head size: a request line and headers beyond `max_header_bytes` get 431 and the connection is closed;
- connections past twice `max_connections` are closed as soon as they open, unread: the file handles the server
  holds stay bounded whatever clients do, and those between the two limits get uvicorn's 503.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Optional

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

HEADERS_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


FLAGS = {"max_connections": "--max-connections", "keep_alive_seconds": "--keep-alive-timeout",
         "read_timeout_seconds": "--read-timeout", "max_header_bytes": "--max-header-bytes"}


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    """max_connections: open connections (and requests in progress) past which a request gets 503;
    keep_alive_seconds: how long a connection may stay idle after an answer; read_timeout_seconds: how long a
    client has to send a whole request; max_header_bytes: the largest request line and headers taken."""

    max_connections: int = 1000
    keep_alive_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    max_header_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name, flag in FLAGS.items():
            if getattr(self, name) <= 0:
                raise ValueError(f"serve: {flag} must be above 0, got {getattr(self, name)}")

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments of `uvicorn.run` (or `uvicorn.Config`) that apply these limits."""
        return {"http": protocol(self), "limit_concurrency": self.max_connections,
                "timeout_keep_alive": self.keep_alive_seconds}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a read deadline, a head size limit and a hard connection limit."""

    limits = ConnectionLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: Optional[asyncio.TimerHandle] = None
        self._read = self._answered = self._head_bytes = 0
        self._refused = False
        super().connection_made(transport)
        if len(self.connections) > 2 * self.limits.max_connections:
            logger.info("serve: %d connections open: a new one is closed unread", len(self.connections))
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.limits.read_timeout_seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        """Closes the connection when the client is the one expected to send (every request read was answered)."""
        self._deadline = None
        if self._read == self._answered and not self.transport.is_closing():
            logger.info("serve: a connection from %s sent no whole request within %g s: closed",
                           self.client, self.limits.read_timeout_seconds)
            self.transport.close()

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_header_bytes and not self._refused:
            self._refused = True
            body = b'{"error":"Request line and headers exceed the limit of %d bytes"}' % self.limits.max_header_bytes
            self.transport.write(HEADERS_TOO_LARGE % (len(body), body))
            self.transport.close()

    def on_headers_complete(self) -> None:
        if not self._refused:  # a refused request is never started
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._read += 1
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._answered += 1
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()


def protocol(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
