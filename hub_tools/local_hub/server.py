"""A small Hugging Face Hub-compatible HTTP server, for working and testing with no network.

The real `huggingface_hub`, `datasets`, `transformers` and `evaluate` clients talk to it through
`HF_ENDPOINT` (with `HF_HUB_DISABLE_XET=1`: the server has no Xet, and never sends Xet headers). The
surface it implements is the one those clients use, mapped in `shared/docs/hub-http-api.md`.

This module runs it; the rooms are next door: `app.py` (authentication and the route table over the raw
path), `handlers/` (repos and refs, files, uploads and commits), `errors.py` (the Hub's error shape),
`storage.py` (repos, commits, refs and blobs on disk) and `faults.py` (the test fault-injection harness,
installed only with `faults=True`).

    from hub_tools.local_hub.server import start_background
    hub = start_background("/tmp/hub", tokens=["hf_secret"])   # hub.url -> http://127.0.0.1:<port>
    ...
    hub.stop()
"""

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hub_tools.local_hub.app import LocalHub
from hub_tools.local_hub.faults import FaultInjector
from hub_tools.local_hub.spaces_runner import SpaceRunner


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
        self._server.should_exit = True
        self._thread.join(timeout)
        if self.hub.spaces is not None:
            self.hub.spaces.close()


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
) -> RunningHub:
    """Start the local hub in a daemon thread; returns once it accepts connections.

    Args:
        root: the storage folder (created; what is stored survives a restart).
        host: the address to bind (default: loopback only).
        port: the port; 0 binds a free one (`RunningHub.port` says which).
        token_file: a file of accepted tokens, one a line, re-read when it changes.
        tokens: tokens accepted besides the file's.
        faults: switch the fault-injection harness on (tests): `RunningHub.faults` then injects failures.
        run_spaces: run every Gradio Space's app (`spaces_runner.py`), restarted on each commit to its main.
        timeout: seconds to wait for the server to accept connections.

    Returns:
        The `RunningHub`: its `url`, and `stop()`.
    """
    import uvicorn

    hub = LocalHub(root, token_file=token_file, tokens=tokens, faults=faults)
    if run_spaces:
        hub.spaces = SpaceRunner(hub.store)
    config = uvicorn.Config(
        hub.build_app(),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"local-hub-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
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


def serve(root, *, host: str = "127.0.0.1", port: int = 8787, token_file=None, run_spaces: bool = False) -> None:
    """Run the local hub in the foreground (the `babyhub hub serve` command); never with the fault harness.

    With `run_spaces`, every Gradio Space's app runs too (`spaces_runner.py`), stopped when the hub stops.
    """
    import uvicorn

    hub = LocalHub(root, token_file=token_file)
    if run_spaces:
        display_host = f"[{host}]" if ":" in host else host
        hub.spaces = SpaceRunner(hub.store, f"http://{display_host}:{port}")
        # The apps start once the hub answers (they may load their models from it).
        threading.Timer(1.0, hub.spaces.start_all).start()
    try:
        uvicorn.run(hub.build_app(), host=host, port=port, log_level="info", lifespan="off")
    finally:
        if hub.spaces is not None:
            hub.spaces.close()
