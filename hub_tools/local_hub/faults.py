"""The fault-injection harness: tests switch it on to check that clients survive a flaky hub.

`start_background(root, faults=True)` wraps the app in `FaultMiddleware`; `RunningHub.faults` is then the
`FaultInjector`, which answers chosen requests with a 503 or drops their connection:

    hub.faults.add("commit", "drop_after")   # the next commit lands, but its client never hears back
    hub.faults.add("lfs_upload", "403")      # the next LFS transfer is refused as with an expired grant
    hub.faults.fired                         # [("commit", "drop_after")]: the fault really happened
    hub.faults.counts["lfs_upload"]          # requests seen per kind, faulty or not

A hub served for people (`babyhub hub serve`) never has it: nothing here runs unless it is switched on, and the
log filter that keeps injected drops out of uvicorn's error log is installed with the harness, not on import.
"""

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

from hub_tools.local_hub.errors import HubError, error_response
from hub_tools.local_hub.wire import drain, raw_path

ACTIONS = ("503", "403", "drop", "drop_after")


@dataclass
class Fault:
    target: str  # "lfs_upload", "commit", "preupload", "lfs_batch", "any"
    # "503"; "403" (as an expired LFS transfer grant is answered); "drop" (drop the connection before handling);
    # "drop_after" (handle, then drop)
    action: str
    times: int = 1


@dataclass
class FaultInjector:
    faults: list[Fault] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # requests seen per kind (lfs_upload, commit, ...)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, target: str, action: str, times: int = 1) -> None:
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}: one of {', '.join(ACTIONS)}")
        with self.lock:
            self.faults.append(Fault(target, action, times))

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.fired.clear()
            self.counts.clear()

    def take(self, target: str) -> str | None:
        """Count a request of kind `target`; return the fault to inject into it, if any."""
        with self.lock:
            self.counts[target] += 1
            for fault in self.faults:
                if fault.times > 0 and fault.target in (target, "any"):
                    fault.times -= 1
                    self.fired.append((target, fault.action))
                    return fault.action
        return None


class DroppedConnection(Exception):
    """Raised after the response has started: uvicorn then closes the socket mid-response."""


def _not_an_injected_drop(record: logging.LogRecord) -> bool:
    # uvicorn logs every exception with a traceback; an injected drop is expected, not an error.
    return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


def classify(method: str, path: str) -> str:
    """The kind of a request, as faults target it: lfs_upload, commit, preupload, lfs_batch or other."""
    if method == "PUT" and "/info/lfs/objects/" in path:
        return "lfs_upload"
    if method == "POST" and "/commit/" in path and path.startswith("/api/"):
        return "commit"
    if method == "POST" and "/preupload/" in path:
        return "preupload"
    if path.endswith("/info/lfs/objects/batch"):
        return "lfs_batch"
    return "other"


class FaultMiddleware:
    """ASGI middleware that counts every request by kind and injects the faults its injector holds."""

    def __init__(self, app, injector: FaultInjector):
        self.app = app
        self.injector = injector

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        action = self.injector.take(classify(scope["method"], raw_path(scope)))
        if action is None:
            return await self.app(scope, receive, send)
        if action in ("503", "403"):
            await drain(receive)
            message = {
                "503": "Service temporarily unavailable (injected fault)",
                "403": "Invalid or expired LFS transfer URL: ask the batch endpoint for a new one (injected fault)",
            }[action]
            return await error_response(HubError(int(action), message))(scope, receive, send)
        if action == "drop":
            # Read part of the body (an upload in flight), then cut the connection.
            message = await receive()
            del message
        else:  # drop_after: the request takes effect, but the client never hears back

            async def swallow(message):
                return None

            await self.app(scope, receive, swallow)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        raise DroppedConnection("injected fault: connection dropped")


def install(app, injector: FaultInjector) -> FaultMiddleware:
    """Wrap `app` in the harness, and keep injected drops out of uvicorn's error log (idempotent)."""
    logging.getLogger("uvicorn.error").addFilter(_not_an_injected_drop)
    return FaultMiddleware(app, injector)
