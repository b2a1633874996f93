"""Errors with the Hub's shape, and the response that carries them.

Every error the local hub answers is `{"error": message}` with the status, plus `X-Error-Code` (the kind the
client maps to its exception types: `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) and `X-Error-Message`
headers. Handlers and the store raise `HubError`; the app turns it into this response, so bad input is a 4xx
and never a 500 with a traceback.
"""

import errno
import logging
import time

from starlette.responses import JSONResponse, Response


class HubError(Exception):
    """An error with the Hub's shape: HTTP status, `X-Error-Code` and a message."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        extra: dict | None = None,
        headers: dict | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}
        self.headers = headers or {}


def bad_request(message: str) -> HubError:
    """A 400: the request itself is malformed (a name, a path, a body)."""
    return HubError(400, message)


def not_found(path: str) -> HubError:
    """A 404 for a path no route serves."""
    return HubError(404, f"Not found: {path}")


def repo_not_found(repo_type: str, repo_id: str, status: int = 404) -> HubError:
    """The repo does not exist, or (status 401) it is private and the request has no token."""
    return HubError(status, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")


def entry_not_found(path: str, revision: str, commit: str | None = None) -> HubError:
    """No file or folder `path` at `revision`; with `commit`, the client caches the miss (`X-Repo-Commit`)."""
    headers = {"X-Repo-Commit": commit} if commit else None
    return HubError(404, f"Entry not found: {path} at {revision}", "EntryNotFound", headers=headers)


def from_os_error(err: OSError) -> HubError | None:
    """The Hub-shaped answer to a system error that is not a bug: a full disk (507), out of descriptors (503)."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return HubError(507, "Insufficient storage: the local hub's disk is full; free space, then retry")
    if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        return HubError(503, "The local hub is out of resources (open files); retry in a moment", "ServiceUnavailable")
    return None


def header_value(text: str, limit: int = 500) -> str:
    """`text` as a safe HTTP header value: no control characters (CR, LF, DEL, C1...), latin-1, no blank ends.

    A header value with a CR, LF or trailing blank makes h11 drop the connection instead of answering, and error
    messages quote what the client sent (a revision, a path): so every one is cleaned here.
    """
    cleaned = "".join(" " if ord(c) < 32 or 0x7F <= ord(c) <= 0x9F else c for c in text)
    cleaned = cleaned.encode("latin-1", "replace").decode("latin-1")
    return " ".join(cleaned.split())[:limit].strip()


def error_response(err: HubError) -> Response:
    """The JSON response of `err`, with the `X-Error-Code` and `X-Error-Message` headers the clients read."""
    headers = {"X-Error-Message": header_value(err.message)}
    if err.code:
        headers["X-Error-Code"] = err.code
    headers.update({name: header_value(str(value)) for name, value in err.headers.items()})
    return JSONResponse({"error": err.message, **err.extra}, status_code=err.status, headers=headers)


class RateLimitedLog:
    """Log a kind of message at most once per `interval` seconds, saying how many were held back meanwhile.

    A full disk or a descriptor shortage fails every request at once; one line per interval says so without
    flooding the log (the issue measured 5 MB/s of tracebacks).
    """

    def __init__(self, log: logging.Logger, interval: float = 10.0):
        self.log = log
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, kind: str) -> int | None:
        """None when a message of `kind` must be held back; else how many were held back since the last one."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._last[kind] = now
        return self._held.pop(kind, 0)

    def warning(self, kind: str, message: str, *args) -> None:
        held = self.allow(kind)
        if held is not None:
            suffix = f" ({held} more like it in the last {self.interval:.0f} s)" if held else ""
            self.log.warning(message + suffix, *args)
