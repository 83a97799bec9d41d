"""Connection limits of `flywheel serve`: uvicorn's own, and the two uvicorn lacks.

uvicorn limits requests in progress and open connections together (`limit_concurrency`: past it a request is
answered 503 and its connection closed) and closes a connection idle after an answer (`timeout_keep_alive`).
It sets no deadline on a request still being read and no size on its head: a client that opens a connection and
sends nothing, or a header a byte at a time, holds the connection (a file handle) for ever. `protocol` adds both
to uvicorn's httptools protocol:
- read deadline: from the moment a connection opens, or the first byte of a request arrives, the client has
  `read_timeout` seconds to send a whole request (head and body), else the connection is closed (idle between
  requests, it is uvicorn's keep-alive timeout that closes it);
- head size: a request line and headers beyond `max_header_bytes` get 431 and the connection is closed;
- connections past twice `max_connections` are closed as soon as they open, unread: the file handles the server
  holds stay bounded whatever clients do, and those between the two limits get uvicorn's 503;
- keep-alive: a connection whose next request has already arrived is not closed as idle. uvicorn closes a
  connection when its keep-alive timer fires; uvloop runs due timers before it reads the sockets, so when the event
  loop ran late (a busy machine, or the thread loading a rollout's candidate holding the interpreter) a request sent
  just before the deadline was thrown away unread with its connection (the client saw a reset, no answer). The
  timer now closes only a connection with nothing waiting to be read. And the default idle time (20 s) is longer
  than the time after which common clients stop reusing an idle connection (httpx 5 s, aiohttp 15 s): with
  uvicorn's 5 s, equal to httpx's, a client reused a connection idle for just under 5 s by its clock while the
  server, whose clock started when it sent the answer, was closing it (a reset, or "Server disconnected without
  sending a response").
"""

from __future__ import annotations

import array
import asyncio
import dataclasses
import fcntl
import logging
import math
import termios
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
    keep_alive_seconds: float = 20.0  # above the clients' own idle expiry (httpx 5 s, aiohttp 15 s): see above
    read_timeout_seconds: float = 30.0
    max_header_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name, flag in FLAGS.items():
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ValueError(f"serve: {flag} must be a number above 0, got {getattr(self, name)}")

    def uvicorn_options(self) -> dict[str, Any]:
        """Keyword arguments of `uvicorn.run` (or `uvicorn.Config`) that apply these limits."""
        return {"http": protocol(self), "limit_concurrency": self.max_connections,
                "timeout_keep_alive": self.keep_alive_seconds}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a read deadline, a head size limit and a hard connection limit. Its cost
    per request is one call (`data_received`) and a clock read: one timer per connection checks the deadline."""

    limits = ConnectionLimits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: Optional[asyncio.TimerHandle] = None
        self._head_bytes = 0
        self._head_tail = b""  # the last bytes of the head read so far: its blank line may straddle two reads
        super().connection_made(transport)
        self._since = self.loop.time()  # when the request being read began (or the connection, before one)
        if len(self.connections) > 2 * self.limits.max_connections:
            logger.info("serve: %d connections open: a new one is closed unread", len(self.connections))
            transport.close()
            return
        self._deadline = self.loop.call_later(self.limits.read_timeout_seconds, self._check_deadline)

    def timeout_keep_alive_handler(self) -> None:
        """uvicorn's keep-alive timeout, except for a connection whose next request is already waiting to be read
        (it arrived while the event loop ran late): that one is left open for the read that follows (and the
        timer armed again, should nothing be read)."""
        if not self.transport.is_closing() and _bytes_waiting(self.transport) > 0:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)
            return
        super().timeout_keep_alive_handler()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        """True while no request is in progress: the next one's head is awaited or being read."""
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if self._between_requests():  # a head is awaited or being read
            if not self._head_bytes:
                self._since = self.loop.time()
            if self._head_bytes + len(data) > self.limits.max_header_bytes and self._head_too_large(data):
                return
        super().data_received(data)
        if self._between_requests():
            self._head_bytes += len(data)
            self._head_tail = (self._head_tail + data)[-3:]
        else:
            self._head_bytes, self._head_tail = 0, b""

    def _head_too_large(self, data: bytes) -> bool:
        """Answers 431 and closes the connection, before the parser sees `data`, when the head being read ends
        beyond `max_header_bytes` or does not end in it (its blank line is not there)."""
        end = (self._head_tail + data).find(b"\r\n\r\n")
        if end != -1 and self._head_bytes - len(self._head_tail) + end + 4 <= self.limits.max_header_bytes:
            return False
        body = b'{"error":"Request line and headers exceed the limit of %d bytes"}' % self.limits.max_header_bytes
        self.transport.write(HEADERS_TOO_LARGE % (len(body), body))
        self.transport.close()
        return True

    def _check_deadline(self) -> None:
        """Closes the connection when the client is the one expected to send (its first request, a head begun, a
        body still coming) and `read_timeout_seconds` passed since that began; else checks again when it could."""
        self._deadline = None
        if self.transport.is_closing():
            return
        timeout, cycle = self.limits.read_timeout_seconds, self.cycle
        if cycle is None:  # nothing read since the connection opened
            reading = True
        elif cycle.response_complete:  # between requests: idle is uvicorn's keep-alive timeout's to close
            reading = self._head_bytes > 0
        else:
            reading = cycle.more_body
        left = self._since + timeout - self.loop.time() if reading else timeout
        if left <= 0:
            logger.info("serve: a connection from %s sent no whole request within %g s: closed", self.client, timeout)
            self.transport.close()
            return
        self._deadline = self.loop.call_later(left, self._check_deadline)


def _bytes_waiting(transport: asyncio.Transport) -> int:
    """Bytes the client sent that the server has not read yet (the socket's receive queue, FIONREAD); 0 when
    they cannot be counted. One system call, made only when a keep-alive timer fires."""
    sock = transport.get_extra_info("socket")
    try:
        count = array.array("i", [0])
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
        return count[0]
    except (AttributeError, OSError, ValueError):
        return 0


def protocol(limits: ConnectionLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to these limits."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})
