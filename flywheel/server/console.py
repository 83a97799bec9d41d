"""What `flywheel serve` tells the person who started it: one line per event, nothing before it can keep a promise.

Errors come before any other line: the serving folder is checked and the address bound (not yet listening, so
a client is refused rather than kept waiting) before TensorFlow is imported. Then one line per version loaded,
refused or unloaded and per rollout change (the registry's and the routing's own log records, at INFO), a
`ready` line once the models are loaded and the socket listens (a request sent after it is answered), and a
`stopped` line after the request log is written. TensorFlow's and CUDA's start-up noise is left out unless
--verbose (`flywheel.quiet`).
"""

from __future__ import annotations

import logging
import signal
import socket
from typing import Any, Callable, Optional, TextIO

import uvicorn

SERVING_LOGGER = "flywheel.server"


class ListenError(ValueError):
    """The address cannot be served: an unknown host, a port in use or not this user's to take."""


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, not listening yet (uvicorn listens on it once the models are loaded)."""
    if not 0 <= port <= 65535:
        raise ListenError(f"serve: --port: expected 0..65535, got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise ListenError(f"serve: --host {host}: expected an address of this machine, found none ({e.strerror})"
                          ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise ListenError(f"serve: cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


class _EventFormatter(logging.Formatter):
    """`flywheel: <message>`, one line; a traceback only when verbose (it goes to the server's log otherwise)."""

    def __init__(self, verbose: bool):
        super().__init__("flywheel: %(message)s")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose:
            return super().format(record)
        return f"flywheel: {record.getMessage()}"


class _StreamLookup(logging.StreamHandler):
    """Writes to the stream `out()` gives at each record (the process's current sys.stderr, for a harness that
    swaps it)."""

    def __init__(self, out: Callable[[], TextIO]):
        super().__init__()
        self._lookup = out

    @property
    def stream(self) -> TextIO:
        return self._lookup()

    @stream.setter
    def stream(self, value: TextIO) -> None:  # set once by StreamHandler; looked up instead
        pass


def show_events(out: Callable[[], TextIO], verbose: bool) -> Callable[[], None]:
    """Routes the serving modules' log records (INFO and up) to `out` as one line each; returns the undo."""
    handler = _StreamLookup(out)
    handler.setFormatter(_EventFormatter(verbose))
    served = logging.getLogger(SERVING_LOGGER)
    before = served.level, served.propagate
    served.addHandler(handler)
    served.setLevel(logging.INFO)
    served.propagate = False

    def undo() -> None:
        served.removeHandler(handler)
        served.setLevel(before[0])
        served.propagate = before[1]

    return undo


class Server(uvicorn.Server):
    """uvicorn's server that calls `ready()` once its app has started (the models are loaded) and it listens."""

    def __init__(self, config: uvicorn.Config, ready: Callable[[], None]):
        super().__init__(config)
        self._ready = ready
        self.stop_signal: Optional[str] = None

    async def startup(self, sockets: Optional[list[socket.socket]] = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            self._ready()

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.stop_signal = signal.Signals(sig).name
        super().handle_exit(sig, frame)
