"""Run an ASGI app with uvicorn in a background thread on a loopback port.

Why: tests, the demo and benchmarks talk to the sandboxes over real HTTP (real sockets,
timeouts, dropped connections), but want to start and stop them inside one Python process.
The socket is bound before the thread starts, so ``.url`` is valid as soon as this returns and
port 0 (an ephemeral port) never races with another test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import uvicorn

from sync_pipeline.sandbox.faults import expose_transport


class ServerThread:
    """A uvicorn server running in a daemon thread; use ``.url`` and ``.stop()``."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        start_timeout_s: float = 10.0,
    ) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(
            expose_transport(app),
            log_level=log_level,
            # No logging.config.dictConfig per server: it takes logging's module lock and then
            # each handler's lock, while a thread logging through a handler that logs again
            # takes them the other way round; with servers started beside running jobs (the
            # fault labs) the two deadlocked. uvicorn's loggers propagate to the root instead.
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name=f"sandbox-{self.port}", daemon=True)
        self._error: BaseException | None = None
        self._thread.start()
        self._wait_started(start_timeout_s)

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._sock])  # uvloop/httptools when installed
        except BaseException as exc:  # reported by _wait_started / stop
            self._error = exc

    def _wait_started(self, timeout_s: float) -> None:
        self._thread.join(0)
        deadline = threading.Event()
        for _ in range(int(timeout_s / 0.01)):
            if self.server.started or self._error is not None or not self._thread.is_alive():
                break
            deadline.wait(0.01)
        if not self.server.started:
            self.stop()
            raise RuntimeError(f"sandbox server on {self.url} did not start: {self._error!r}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask uvicorn to exit and wait for the thread (stalled requests are cut off)."""
        self.server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout_s)
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_in_thread(
    app: Any, host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> ServerThread:
    """Start ``app`` on ``host:port`` (0 = any free port) and return the running handle."""
    return ServerThread(app, host, port, **kwargs)
