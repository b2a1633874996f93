"""Errors with the Hub's shape, and the response that carries them.

Every error the local hub answers is `{"error": message}` with the status, plus `X-Error-Code` (the kind the
client maps to its exception types: `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`) and `X-Error-Message`
headers. Handlers and the store raise `HubError`; the app turns it into this response, so bad input is a 4xx
and never a 500 with a traceback.
"""

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


def error_response(err: HubError) -> Response:
    """The JSON response of `err`, with the `X-Error-Code` and `X-Error-Message` headers the clients read."""
    message = err.message
    headers = {"X-Error-Message": message.encode("latin-1", "replace").decode("latin-1")[:500].replace("\n", " ")}
    if err.code:
        headers["X-Error-Code"] = err.code
    headers.update(err.headers)
    return JSONResponse({"error": message, **err.extra}, status_code=err.status, headers=headers)
