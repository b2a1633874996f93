"""A small Hugging Face Hub-compatible HTTP server, for working and testing with no network.

The real `huggingface_hub`, `datasets`, `transformers` and `evaluate` clients talk to it through
`HF_ENDPOINT` (with `HF_HUB_DISABLE_XET=1`: the server has no Xet, and never sends Xet headers), and `git`
(with Debian's `git-lfs`) clones and pushes its repos over smart HTTP. The surface it implements is the one those
clients use, mapped in `shared/docs/hub-http-api.md`.

This module runs it; the rooms are next door: `app.py` (authentication, limits and the route table over the raw
path), `handlers/` (repos and refs, files, uploads and commits), `githttp.py` (git and the LFS API), `gitstore.py`
(repos as bare git repositories), `errors.py` (the Hub's error shape) and `faults.py` (the test fault-injection
harness, installed only with `faults=True`).

    from hub_tools.local_hub.server import start_background
    hub = start_background("/tmp/hub", tokens=["hf_secret"])   # hub.url -> http://127.0.0.1:<port>
    ...
    hub.stop()

One connection must not hold the server: a request head has `ServeOptions.head_timeout` seconds to arrive whole
(a half-sent head - slowloris - is closed), at most `max_connections` are open at once (more are closed as they
come), the process's descriptor limit is raised to its hard limit (towards `descriptors`), and errors the event
loop reports (an `accept()` out of descriptors) are logged once per `log_interval`, not once per attempt.
"""

import asyncio
import logging
import resource
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from hub_tools.local_hub.app import Limits, LocalHub
from hub_tools.local_hub.errors import RateLimitedLog
from hub_tools.local_hub.faults import FaultInjector
from hub_tools.local_hub.spaces_runner import SpaceRunner

logger = logging.getLogger("babyhub.local_hub.server")


@dataclass
class ServeOptions:
    """How the server guards its connections (see the module docstring); `limits` bound each request."""

    head_timeout: float = 10.0  # seconds for a request head (request line and headers) to arrive whole
    keep_alive: float = 30.0  # seconds an idle keep-alive connection stays open
    max_connections: int | None = None  # default: 4096, or half the descriptor limit when that is lower
    descriptors: int = 65536  # raise the soft RLIMIT_NOFILE towards this (never past the hard limit)
    log_interval: float = 10.0  # seconds between two log lines of the same kind of loop error
    limits: Limits = field(default_factory=Limits)


def raise_descriptor_limit(target: int) -> int:
    """Raise this process's soft limit on open files towards `target` (at most the hard limit); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as err:
            logger.warning("local hub: cannot raise the open-file limit from %d to %d: %s", soft, wanted, err)
    return soft


def connection_cap(options: ServeOptions, descriptors: int) -> int:
    """How many connections may be open at once: asked, else 4096 or half the descriptors (the store needs some)."""
    if options.max_connections is not None:
        return options.max_connections
    return max(16, min(4096, (descriptors - 64) // 2))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline on request heads and a cap on open connections.

    uvicorn closes an idle keep-alive connection but waits forever for a head that never completes (and for a new
    connection that sends nothing); here a connection still waiting for its head `head_timeout` seconds after its
    first byte (or after it opened) is closed, and a connection past `max_connections` is closed as it opens.
    """

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self.guard: _Guard = config.babyhub_guard
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        if len(self.connections) > self.guard.max_connections:
            self.guard.log.warning(
                "connections", "local hub: more than %d connections open: closing new ones", self.guard.max_connections
            )
            transport.abort()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.guard.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


@dataclass
class _Guard:
    head_timeout: float
    max_connections: int
    log: RateLimitedLog


def _loop_error_handler(log: RateLimitedLog):
    """An event loop exception handler that reports each kind of error once per interval (with a count)."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        kind = str(context.get("message") or type(context.get("exception")).__name__)
        held = log.allow(kind)
        if held is None:
            return
        if held:
            context = {**context, "message": f"{kind} ({held} more like it in the last {log.interval:.0f} s)"}
        loop.default_exception_handler(context)

    return handle


def _server(hub: LocalHub, host: str, port: int, options: ServeOptions, log_level: str):
    import uvicorn

    descriptors = raise_descriptor_limit(options.descriptors)
    config = uvicorn.Config(
        hub.build_app(),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http=GuardedH11Protocol,
        timeout_keep_alive=int(options.keep_alive),
    )
    log = RateLimitedLog(logger, options.log_interval)
    config.babyhub_guard = _Guard(options.head_timeout, connection_cap(options, descriptors), log)
    server = uvicorn.Server(config)

    def run() -> None:
        async def serve() -> None:
            asyncio.get_running_loop().set_exception_handler(_loop_error_handler(log))
            await server.serve()

        asyncio.run(serve())

    return server, run


@dataclass
class RunningHub:
    url: str
    port: int
    root: Path
    hub: LocalHub
    _server: object
    _thread: threading.Thread

    @property
    def faults(self) -> FaultInjector:
        """The fault injector; only a hub started with `faults=True` has one."""
        if self.hub.faults is None:
            raise RuntimeError("this local hub runs without the fault harness: start it with faults=True")
        return self.hub.faults

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and the Spaces' apps, then close the store (its repositories and the root's owner lock)."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self.hub.spaces is not None:
            self.hub.spaces.close()
        self.hub.close()


def start_background(
    root,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token_file=None,
    tokens=None,
    faults: bool = False,
    run_spaces: bool = False,
    timeout: float = 20.0,
    options: ServeOptions | None = None,
) -> RunningHub:
    """Start the local hub in a daemon thread; returns once it accepts connections.

    Args:
        root: the storage folder (created 0700; what is stored survives a restart; an old root is migrated).
        host: the address to bind (default: loopback only).
        port: the port; 0 binds a free one (`RunningHub.port` says which).
        token_file: a file of accepted tokens, one a line, re-read when it changes.
        tokens: tokens accepted besides the file's.
        faults: switch the fault-injection harness on (tests): `RunningHub.faults` then injects failures.
        run_spaces: run every Gradio Space's app (`spaces_runner.py`), restarted on each commit to its main.
        timeout: seconds to wait for the server to accept connections.
        options: connection guards and request limits (`ServeOptions`; the defaults suit a shared machine).

    Returns:
        The `RunningHub`: its `url`, and `stop()`.
    """
    options = options or ServeOptions()
    hub = LocalHub(root, token_file=token_file, tokens=tokens, faults=faults, limits=options.limits)
    if run_spaces:
        hub.spaces = SpaceRunner(hub.store)
    server, run = _server(hub, host, port, options, "warning")
    thread = threading.Thread(target=run, name=f"local-hub-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            hub.close()
            raise RuntimeError(f"the local hub did not start on {host}:{port} (port in use?)")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    display_host = f"[{host}]" if ":" in host else host
    _wait_accepting(host, bound, deadline)
    url = f"http://{display_host}:{bound}"
    if hub.spaces is not None:
        hub.spaces.endpoint = url
        hub.spaces.start_all()
    return RunningHub(url, bound, hub.store.root, hub, server, thread)


def _wait_accepting(host: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def serve(
    root,
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    token_file=None,
    run_spaces: bool = False,
    options: ServeOptions | None = None,
) -> None:
    """Run the local hub in the foreground (the `babyhub hub serve` command); never with the fault harness.

    Args:
        root: the storage folder (created 0700; an old root is migrated first).
        host: the address to bind.
        port: the port.
        token_file: a file of accepted tokens, one a line, re-read when it changes.
        run_spaces: run every Gradio Space's app too (`spaces_runner.py`), stopped when the hub stops.
        options: connection guards and request limits (`ServeOptions`).
    """
    options = options or ServeOptions()
    hub = LocalHub(root, token_file=token_file, limits=options.limits)
    if run_spaces:
        display_host = f"[{host}]" if ":" in host else host
        hub.spaces = SpaceRunner(hub.store, f"http://{display_host}:{port}")
        # The apps start once the hub answers (they may load their models from it).
        threading.Timer(1.0, hub.spaces.start_all).start()
    try:
        _server(hub, host, port, options, "info")[1]()
    finally:
        if hub.spaces is not None:
            hub.spaces.close()
        hub.close()
