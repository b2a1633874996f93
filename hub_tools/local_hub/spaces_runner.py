"""Spaces that run: each Gradio Space's app, from its repo's main branch, in a subprocess on a free loopback port.

With `babyhub hub serve --run-spaces` (`server.start_background(..., run_spaces=True)`) the hub checks out every
Gradio Space's main branch into a temporary folder and starts `python APP_FILE` there (`app_file` of the card,
default `app.py`) with `GRADIO_SERVER_NAME=127.0.0.1`, a free `GRADIO_SERVER_PORT` and `HF_ENDPOINT` set to the
hub (so the app loads its models from the hub, as on huggingface.co; no token is given to it). A new commit on
main restarts it. `space_info` reports the app's address as `host` and its stage as `runtime.stage` (BUILDING until
it answers, then RUNNING; RUNTIME_ERROR with the end of its log when it exits), which is what
`gradio_client.Client("NS/NAME")` reads, and the Space's page links to it.

Only Gradio Spaces run (other SDKs report CONFIG_ERROR); the app runs with the hub's own Python and packages.
"""

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hub_tools.local_hub.cards import InvalidMetadata, read_front_matter

logger = logging.getLogger("babyhub.local_hub")

START_TIMEOUT = 180.0  # seconds for an app to answer before it is reported as a runtime error
LOG_TAIL = 2000  # characters of the app's log shown with a runtime error


@dataclass
class SpaceStatus:
    """What `space_info` and the Space's page show: the stage, the app's address when it runs, why it failed."""

    stage: str
    url: str | None = None
    error: str | None = None
    commit: str | None = None


class _App:
    def __init__(self, repo_id: str, commit: str, folder: Path):
        self.repo_id, self.commit, self.folder = repo_id, commit, folder
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.status = SpaceStatus("BUILDING", commit=commit)
        self.log = folder.parent / f"{folder.name}.log"


class SpaceRunner:
    """The running apps of a hub's Gradio Spaces, one subprocess each; thread-safe."""

    def __init__(self, store, endpoint: str | None = None, *, python: str = sys.executable):
        self.store = store
        self.endpoint = endpoint
        self.python = python
        self.workdir = Path(tempfile.mkdtemp(prefix="babyhub-spaces-"))
        self._apps: dict[str, _App] = {}
        self._lock = threading.RLock()
        self._closed = False

    # -- what the hub asks --
    def status(self, repo_id: str) -> SpaceStatus | None:
        with self._lock:
            app = self._apps.get(repo_id.lower())
            return app.status if app else None

    def changed(self, repo) -> None:
        """The Space's main branch may have moved: (re)start its app in the background when it did."""
        threading.Thread(target=self._refresh, args=(repo,), name=f"space-{repo.repo_id}", daemon=True).start()

    def start_all(self) -> None:
        """Start the app of every Space the store holds (the hub calls this once it listens)."""
        for repo in self.store.list_repos("space"):
            self.changed(repo)

    def stop(self, repo_id: str) -> None:
        with self._lock:
            app = self._apps.pop(repo_id.lower(), None)
        if app is not None:
            self._terminate(app)

    def close(self) -> None:
        """Stop every app and remove the checkouts."""
        self._closed = True
        with self._lock:
            apps, self._apps = list(self._apps.values()), {}
        for app in apps:
            self._terminate(app)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- running --
    def _refresh(self, repo) -> None:
        try:
            commit = self.store.refs(repo)["branches"].get("main")
            with self._lock:
                current = self._apps.get(repo.repo_id.lower())
                if self._closed or commit is None or (current is not None and current.commit == commit):
                    return
                folder = self.workdir / repo.repo_id.replace("/", "__") / commit
                app = _App(repo.repo_id, commit, folder)
                self._apps[repo.repo_id.lower()] = app
            if current is not None:
                self._terminate(current)
            self._start(repo, app)
        except Exception as err:  # a Space that cannot start must not take the hub down
            logger.exception("local hub: the Space %s could not start", repo.repo_id)
            app_status = SpaceStatus("BUILD_ERROR", error=f"{type(err).__name__}: {err}")
            with self._lock:
                if repo.repo_id.lower() in self._apps:
                    self._apps[repo.repo_id.lower()].status = app_status

    def _start(self, repo, app: _App) -> None:
        files = self.store.get_commit(repo, app.commit)["files"]
        meta = {}
        readme = files.get("README.md")
        if readme is not None:
            try:
                meta = read_front_matter(self.store.read_bytes(repo, readme).decode("utf-8", "replace"))[1] or {}
            except InvalidMetadata:
                meta = {}
        sdk = meta.get("sdk") or repo.meta.get("sdk") or "gradio"
        app_file = meta.get("app_file") or "app.py"
        if sdk != "gradio":
            app.status = SpaceStatus("CONFIG_ERROR", error=f"only Gradio Spaces run on this hub (sdk: {sdk})")
            return
        if not isinstance(app_file, str) or app_file not in files:
            app.status = SpaceStatus("NO_APP_FILE", error=f"no {app_file} on main", commit=app.commit)
            return
        self._checkout(repo, files, app.folder)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            app.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
        env.update(
            GRADIO_SERVER_NAME="127.0.0.1",
            GRADIO_SERVER_PORT=str(app.port),
            GRADIO_ANALYTICS_ENABLED="False",
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_TELEMETRY="1",
        )
        # Not SPACE_ID/SYSTEM=spaces: gradio would then wrap the app for huggingface.co's ZeroGPU (`spaces`).
        if self.endpoint:
            env["HF_ENDPOINT"] = self.endpoint
        with open(app.log, "wb") as log:
            app.process = subprocess.Popen(
                [self.python, app_file], cwd=app.folder, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        url = f"http://127.0.0.1:{app.port}"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if app.process.poll() is not None:
                app.status = SpaceStatus("RUNTIME_ERROR", error=self._tail(app), commit=app.commit)
                return
            if _answers(url + "/config"):
                app.status = SpaceStatus("RUNNING", url=url, commit=app.commit)
                logger.info("local hub: the Space %s runs at %s", repo.repo_id, url)
                threading.Thread(target=self._watch, args=(app,), daemon=True).start()
                return
            time.sleep(0.3)
        app.status = SpaceStatus("RUNTIME_ERROR", error=f"no answer after {START_TIMEOUT:.0f}s", commit=app.commit)

    def _watch(self, app: _App) -> None:
        """Report an app that exits on its own as a runtime error."""
        code = app.process.wait()
        with self._lock:
            if self._apps.get(app.repo_id.lower()) is app and not self._closed:
                app.status = SpaceStatus(
                    "RUNTIME_ERROR", error=f"exited with {code}: {self._tail(app)}", commit=app.commit
                )

    def _checkout(self, repo, files: dict, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for path, entry in files.items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry["lfs"]:
                shutil.copyfile(self.store.blob_path(entry["sha256"]), target)
            else:
                target.write_bytes(self.store.read_bytes(repo, entry))

    @staticmethod
    def _tail(app: _App) -> str:
        try:
            return app.log.read_text(errors="replace")[-LOG_TAIL:]
        except OSError:
            return ""

    @staticmethod
    def _terminate(app: _App) -> None:
        if app.process is not None and app.process.poll() is None:
            app.process.terminate()
            try:
                app.process.wait(10)
            except subprocess.TimeoutExpired:
                app.process.kill()
                app.process.wait()
        shutil.rmtree(app.folder, ignore_errors=True)


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def _answers(url: str) -> bool:
    try:
        with _DIRECT.open(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
