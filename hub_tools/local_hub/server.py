"""A small Hugging Face Hub-compatible HTTP server, for working and testing with no network.

The real `huggingface_hub`, `datasets`, `transformers` and `evaluate` clients talk to it through
`HF_ENDPOINT` (with `HF_HUB_DISABLE_XET=1`: the server has no Xet, and never sends Xet headers). The
surface it implements is the one those clients use, mapped in `shared/docs/hub-http-api.md`.

Routing is done by hand on the *raw* path: revisions and tree paths arrive `quote(x, safe="")`-encoded
(`ckpt%2Fstep-100`), which a decoded-path router would split. Every error has the Hub's shape:
`{"error": ...}` plus `X-Error-Code` / `X-Error-Message` headers, which the client maps to its
exception types; bad input is a 4xx, never a 500 with a traceback.

    from hub_tools.local_hub.server import start_background
    hub = start_background("/tmp/hub", tokens=["hf_secret"])   # hub.url -> http://127.0.0.1:<port>
    ...
    hub.stop()
"""

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode

import yaml
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hub_tools.local_hub.storage import (
    REPO_TYPES,
    HubError,
    Repo,
    Store,
    bad_request,
    check_path,
    check_ref_name,
    git_blob_hasher,
    git_blob_sha1,
    lfs_pointer,
    read_token_file,
)
from hub_tools.repos import REPO_TYPE_PLURALS, repo_url

logger = logging.getLogger("babyhub.local_hub")

USER_NAME = "babyhub"
MAX_API_BODY = 512 * 1024 * 1024  # commits carry small files inline (base64); big files go through LFS
MAX_UPLOAD = 64 * 1024**3
LFS_EXTENSIONS = (
    ".parquet",
    ".safetensors",
    ".bin",
    ".pt",
    ".pth",
    ".ckpt",
    ".arrow",
    ".h5",
    ".onnx",
    ".msgpack",
    ".npy",
    ".npz",
    ".pkl",
    ".zip",
    ".gz",
    ".tar",
    ".model",
)
LFS_THRESHOLD = 10 * 1024 * 1024
TREE_PAGE = 1000
# A README's front matter: the YAML between its first two '---' lines.
_FRONT_MATTER_RE = re.compile(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", re.S)


class _InvalidMetadata(Exception):
    """A README front matter that is not valid YAML, or not a mapping."""


def _front_matter(text: str) -> tuple[bool, dict | None]:
    """(whether `text` has front matter, its YAML mapping or None when empty); _InvalidMetadata otherwise."""
    match = _FRONT_MATTER_RE.match(text)
    if not match:
        return False, None
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise _InvalidMetadata(f"Invalid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise _InvalidMetadata("The metadata must be a YAML mapping")
    return True, data


def error_response(err: HubError) -> Response:
    message = err.message
    headers = {"X-Error-Message": message.encode("latin-1", "replace").decode("latin-1")[:500].replace("\n", " ")}
    if err.code:
        headers["X-Error-Code"] = err.code
    headers.update(err.headers)
    return JSONResponse({"error": message, **err.extra}, status_code=err.status, headers=headers)


# ---- fault injection (tests switch it on to check that clients survive a flaky hub) ---------------------------
@dataclass
class Fault:
    target: str  # "lfs_upload", "commit", "preupload", "lfs_batch", "any"
    action: str  # "503", "drop" (drop the connection before handling), "drop_after" (handle, then drop)
    times: int = 1


@dataclass
class FaultInjector:
    faults: list[Fault] = field(default_factory=list)
    fired: list[tuple[str, str]] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)  # requests seen per kind (lfs_upload, commit, ...)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, target: str, action: str, times: int = 1) -> None:
        if action not in ("503", "drop", "drop_after"):
            raise ValueError(f"unknown fault action {action!r}")
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


class _DroppedConnection(Exception):
    """Raised after the response has started: uvicorn then closes the socket mid-response."""


def _not_an_injected_drop(record: logging.LogRecord) -> bool:
    # uvicorn logs every exception with a traceback; an injected drop is expected, not an error.
    return not (record.exc_info and isinstance(record.exc_info[1], _DroppedConnection))


logging.getLogger("uvicorn.error").addFilter(_not_an_injected_drop)


def _classify(method: str, raw_path: str) -> str:
    if method == "PUT" and raw_path.startswith("/api/lfs-upload/"):
        return "lfs_upload"
    if method == "POST" and "/commit/" in raw_path and raw_path.startswith("/api/"):
        return "commit"
    if method == "POST" and "/preupload/" in raw_path:
        return "preupload"
    if raw_path.endswith("/info/lfs/objects/batch"):
        return "lfs_batch"
    return "other"


class FaultMiddleware:
    def __init__(self, app, injector: FaultInjector):
        self.app = app
        self.injector = injector

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw_path = scope.get("raw_path", b"").decode("latin-1").split("?")[0] or scope["path"]
        action = self.injector.take(_classify(scope["method"], raw_path))
        if action is None:
            return await self.app(scope, receive, send)
        if action == "503":
            await _drain(receive)
            response = error_response(HubError(503, "Service temporarily unavailable (injected fault)"))
            return await response(scope, receive, send)
        if action == "drop":
            # Read part of the body (an upload in flight), then cut the connection.
            message = await receive()
            del message
        else:  # drop_after: the request takes effect, but the client never hears back

            async def swallow(message):
                return None

            await self.app(scope, receive, swallow)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        raise _DroppedConnection("injected fault: connection dropped")


async def _drain(receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


# ---- the application --------------------------------------------------------------------------------------------
class LocalHub:
    def __init__(
        self,
        root: Path | str,
        *,
        token_file: Path | str | None = None,
        tokens: Iterable[str] | None = None,
        max_api_body: int = MAX_API_BODY,
        max_upload: int = MAX_UPLOAD,
    ):
        self.store = Store(root)
        self.token_file = Path(token_file) if token_file else None
        self._static_tokens = {t.strip() for t in (tokens or []) if t and t.strip()}
        self._file_tokens: set[str] = set()
        self._token_mtime: float | None = None
        self.max_api_body = max_api_body
        self.max_upload = max_upload
        self.faults = FaultInjector()
        self._upload_secret = secrets.token_bytes(32)
        self._load_tokens()

    # -- auth --
    def _load_tokens(self) -> None:
        if self.token_file is None:
            return
        try:
            mtime = self.token_file.stat().st_mtime
        except FileNotFoundError:
            self._file_tokens = set()
            return
        if mtime != self._token_mtime:
            self._file_tokens = set(read_token_file(self.token_file))
            self._token_mtime = mtime

    def _token_of(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise HubError(401, "Invalid credentials in Authorization header")
        return value.strip()

    def user(self, request: Request) -> str | None:
        """The user behind the request's token; None when anonymous; 401 for an unknown token."""
        token = self._token_of(request)
        if token is None:
            return None
        self._load_tokens()
        if not any(hmac.compare_digest(token, t) for t in self._static_tokens | self._file_tokens):
            raise HubError(401, "Invalid credentials in Authorization header")
        return USER_NAME

    def require_user(self, request: Request) -> str:
        user = self.user(request)
        if user is None:
            raise HubError(401, "Invalid username or password.")
        return user

    def readable_repo(self, request: Request, repo_type: str, repo_id: str) -> Repo:
        repo = self.store.get_repo(repo_type, repo_id)
        user = self.user(request)
        if repo is None or (repo.private and user is None):
            # As on the Hub: a private repo is indistinguishable from a missing one without a token.
            status = 401 if user is None else 404
            raise HubError(status, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo

    def writable_repo(self, request: Request, repo_type: str, repo_id: str) -> tuple[Repo, str]:
        user = self.require_user(request)
        repo = self.store.get_repo(repo_type, repo_id)
        if repo is None:
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return repo, user

    # -- upload signatures: the LFS PUT carries no auth header, so its URL carries a signed, expiring grant --
    def _sign(self, oid: str, size: int, expires: int) -> str:
        return hmac.new(self._upload_secret, f"{oid}:{size}:{expires}".encode(), hashlib.sha256).hexdigest()

    def upload_href(self, base: str, oid: str, size: int) -> str:
        expires = int(time.time()) + 24 * 3600
        query = urlencode({"size": size, "expires": expires, "sig": self._sign(oid, size, expires)})
        return f"{base}/api/lfs-upload/{oid}?{query}"

    # -- ASGI --
    def build_app(self):
        methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
        app = Starlette(routes=[Route("/{rest:path}", self.dispatch, methods=methods)])
        return FaultMiddleware(app, self.faults)

    async def dispatch(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except HubError as err:
            return error_response(err)
        except ClientDisconnect:  # the client went away mid-request: nobody to answer
            return Response(status_code=400)
        except FileNotFoundError:  # a repo deleted while this request read it
            return error_response(HubError(404, "Repository not found (deleted)", "RepoNotFound"))
        except Exception:  # a bug must not leak a traceback to the client
            logger.exception("local hub: unexpected error on %s %s", request.method, request.url.path)
            return error_response(HubError(500, "Internal error in the local hub"))

    async def _route(self, request: Request) -> Response:
        raw = request.scope.get("raw_path", b"").decode("latin-1").split("?")[0] or request.url.path
        if "\0" in unquote(raw) or "\\" in unquote(raw):
            raise bad_request("Invalid characters in path")
        segs = raw.strip("/").split("/") if raw.strip("/") else []
        method = request.method
        base = str(request.base_url).rstrip("/")

        if segs[:1] == ["api"]:
            return await self._route_api(request, method, segs[1:], base)
        # LFS batch: /{prefix}{ns}/{name}.git/info/lfs/objects/batch
        if len(segs) >= 6 and segs[-4:] == ["info", "lfs", "objects", "batch"] and method == "POST":
            repo_type, id_segs = self._split_prefixed(segs[:-4])
            if len(id_segs) == 2 and id_segs[1].endswith(".git"):
                repo_id = f"{unquote(id_segs[0])}/{unquote(id_segs[1])[:-4]}"
                return await self.lfs_batch(request, repo_type, repo_id, base)
        # resolve: /{prefix}{ns}/{name}/resolve/{rev}/{path...}
        repo_type, rest = self._split_prefixed(segs)
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            repo_id = f"{unquote(rest[0])}/{unquote(rest[1])}"
            revision = unquote(rest[3])
            path = unquote("/".join(rest[4:]))
            return await self.resolve_file(request, repo_type, repo_id, revision, path)
        raise HubError(404, f"Not found: {request.url.path}")

    @staticmethod
    def _split_prefixed(segs: list[str]) -> tuple[str, list[str]]:
        if segs[:1] == ["datasets"]:
            return "dataset", segs[1:]
        if segs[:1] == ["spaces"]:
            return "space", segs[1:]
        return "model", segs

    async def _route_api(self, request: Request, method: str, segs: list[str], base: str) -> Response:
        if segs == ["whoami-v2"] and method == "GET":
            user = self.require_user(request)
            return JSONResponse(
                {
                    "type": "user",
                    "name": user,
                    "fullname": user,
                    "orgs": [],
                    "isPro": False,
                    "auth": {
                        "type": "access_token",
                        "accessToken": {"displayName": "local hub token", "role": "write"},
                    },
                }
            )
        if segs == ["repos", "create"] and method == "POST":
            return await self.create_repo(request, base)
        if segs == ["repos", "delete"] and method == "DELETE":
            return await self.delete_repo(request)
        if segs == ["validate-yaml"] and method == "POST":
            return await self.validate_yaml(request)
        if len(segs) == 2 and segs[0] == "lfs-upload" and method == "PUT":
            return await self.lfs_put(request, unquote(segs[1]))
        if len(segs) == 1 and segs[0] in REPO_TYPE_PLURALS and method == "GET":
            return self.list_repos(request, REPO_TYPE_PLURALS[segs[0]])
        if len(segs) >= 3 and segs[0] in REPO_TYPE_PLURALS:
            repo_type = REPO_TYPE_PLURALS[segs[0]]
            repo_id = f"{unquote(segs[1])}/{unquote(segs[2])}"
            rest = segs[3:]
            return await self._route_repo_api(request, method, repo_type, repo_id, rest, base)
        raise HubError(404, f"Not found: {request.url.path}")

    async def _route_repo_api(
        self, request: Request, method: str, repo_type: str, repo_id: str, rest: list[str], base: str
    ) -> Response:
        action = rest[0] if rest else None
        arg = unquote("/".join(rest[1:])) if len(rest) > 1 else None
        if action is None and method == "GET":
            return self.repo_info(request, repo_type, repo_id, "main", base)
        if action == "revision" and arg and method == "GET":
            return self.repo_info(request, repo_type, repo_id, arg, base)
        if action == "refs" and method == "GET":
            return self.list_refs(request, repo_type, repo_id)
        if action == "tree" and len(rest) >= 2 and method == "GET":
            path = unquote("/".join(rest[2:])) if len(rest) > 2 else ""
            return self.list_tree(request, repo_type, repo_id, unquote(rest[1]), path)
        if action == "paths-info" and arg and method == "POST":
            return await self.paths_info(request, repo_type, repo_id, arg)
        if action == "commits" and arg and method == "GET":
            return self.list_commits(request, repo_type, repo_id, arg)
        if action == "preupload" and arg and method == "POST":
            return await self.preupload(request, repo_type, repo_id, arg)
        if action == "commit" and arg and method == "POST":
            return await self.commit(request, repo_type, repo_id, arg, base)
        if action == "branch" and arg:
            if method == "POST":
                return await self.create_branch(request, repo_type, repo_id, arg)
            if method == "DELETE":
                return self.delete_ref(request, repo_type, repo_id, "branches", arg)
        if action == "tag" and arg:
            if method == "POST":
                return await self.create_tag(request, repo_type, repo_id, arg)
            if method == "DELETE":
                return self.delete_ref(request, repo_type, repo_id, "tags", arg)
        if action == "settings" and method == "PUT":
            return await self.update_settings(request, repo_type, repo_id)
        raise HubError(404, f"Not found: {request.url.path}")

    # ---- body helpers ----
    async def _body(self, request: Request) -> bytes:
        limit = self.max_api_body
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HubError(413, f"Request body too large ({declared} bytes, limit {limit})")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise HubError(413, f"Request body too large (limit {limit} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def _json(self, request: Request, *, default=None) -> dict:
        body = await self._body(request)
        if not body.strip():
            if default is not None:
                return default
            raise bad_request("Expected a JSON body")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise bad_request(f"Malformed JSON body: {err}") from None
        if not isinstance(data, dict):
            raise bad_request("Expected a JSON object")
        return data

    # ---- repos ----
    async def create_repo(self, request: Request, base: str) -> Response:
        user = self.require_user(request)
        data = await self._json(request)
        name, org = data.get("name"), data.get("organization")
        repo_type = data.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise bad_request(f"Invalid repo type {repo_type!r}")
        if not isinstance(name, str) or (org is not None and not isinstance(org, str)):
            raise bad_request("'name' (and 'organization', if given) must be strings")
        repo_id = f"{org or user}/{name}"
        private = data.get("private")
        if data.get("visibility") is not None:
            private = data["visibility"] != "public"
        url = repo_url(base, repo_id, repo_type)
        try:
            self.store.create_repo(repo_type, repo_id, private=bool(private), sdk=data.get("sdk"), author=user)
        except HubError as err:
            if err.status == 409:
                err.extra = {"url": url}
            raise
        return JSONResponse({"url": url, "name": repo_id, "id": repo_id})

    async def delete_repo(self, request: Request) -> Response:
        user = self.require_user(request)
        data = await self._json(request)
        repo_type = data.get("type") or "model"
        repo_id = f"{data.get('organization') or user}/{data.get('name')}"
        repo, _ = self.writable_repo(request, repo_type, repo_id)
        self.store.delete_repo(repo)
        return JSONResponse({})

    async def update_settings(self, request: Request, repo_type: str, repo_id: str) -> Response:
        repo, _ = self.writable_repo(request, repo_type, repo_id)
        data = await self._json(request)
        if "private" in data or "visibility" in data:
            private = data.get("private") if "private" in data else data["visibility"] != "public"
            self.store.set_private(repo, bool(private))
        return JSONResponse({"private": repo.private})

    def list_repos(self, request: Request, repo_type: str) -> Response:
        user = self.user(request)
        params = request.query_params
        author, search = params.get("author"), params.get("search")
        items = []
        for repo in self.store.list_repos(repo_type):
            if repo.private and user is None:
                continue
            if author and repo.repo_id.split("/")[0] != author:
                continue
            if search and search.lower() not in repo.repo_id.lower():
                continue
            sha = self.store.refs(repo)["branches"].get("main")
            items.append(
                {
                    "id": repo.repo_id,
                    "_id": repo.repo_id,
                    "modelId": repo.repo_id,
                    "private": repo.private,
                    "sha": sha,
                    "createdAt": repo.meta.get("createdAt"),
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                }
            )
        return JSONResponse(items)

    def repo_info(self, request: Request, repo_type: str, repo_id: str, revision: str, base: str) -> Response:
        repo = self.readable_repo(request, repo_type, repo_id)
        oid = self.store.resolve(repo, revision)
        commit = self.store.get_commit(repo, oid)
        siblings = []
        for path, entry in sorted(commit["files"].items()):
            sibling = {"rfilename": path, "size": entry["size"], "blobId": self._tree_oid(entry)}
            if entry["lfs"]:
                sibling["lfs"] = {
                    "size": entry["size"],
                    "sha256": entry["sha256"],
                    "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"])),
                }
            siblings.append(sibling)
        info = {
            "id": repo_id,
            "_id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": oid,
            "lastModified": commit["date"],
            "createdAt": repo.meta.get("createdAt"),
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e["size"] for e in commit["files"].values()),
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        card = self._card_data(commit)
        if card is not None:
            info["cardData"] = card
        if repo_type == "space":
            info["sdk"] = repo.meta.get("sdk") or (card or {}).get("sdk")
        return JSONResponse(info)

    def _card_data(self, commit: dict) -> dict | None:
        entry = commit["files"].get("README.md")
        if entry is None or entry["size"] > 1024 * 1024:
            return None
        text = self.store.blob_path(entry["sha256"]).read_text(errors="replace")
        try:
            return _front_matter(text)[1]
        except _InvalidMetadata:
            return None

    # ---- refs, branches, tags, commits ----
    def list_refs(self, request: Request, repo_type: str, repo_id: str) -> Response:
        repo = self.readable_repo(request, repo_type, repo_id)
        refs = self.store.refs(repo)
        out = {
            "branches": [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(refs["branches"].items())
            ],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(refs["tags"].items())],
            "converts": [],
            "pullRequests": [],
        }
        return JSONResponse(out)

    async def create_branch(self, request: Request, repo_type: str, repo_id: str, branch: str) -> Response:
        repo, _ = self.writable_repo(request, repo_type, repo_id)
        data = await self._json(request, default={})
        start = data.get("startingPoint") or "main"
        if not isinstance(start, str):
            raise bad_request("'startingPoint' must be a string")
        check_ref_name(branch)
        self.store.create_ref(repo, "branches", branch, self.store.resolve(repo, start))
        return JSONResponse({})

    async def create_tag(self, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo, _ = self.writable_repo(request, repo_type, repo_id)
        data = await self._json(request)
        tag = data.get("tag")
        if not isinstance(tag, str):
            raise bad_request("'tag' must be a string")
        check_ref_name(tag)
        self.store.create_ref(repo, "tags", tag, self.store.resolve(repo, revision))
        return JSONResponse({})

    def delete_ref(self, request: Request, repo_type: str, repo_id: str, kind: str, name: str) -> Response:
        repo, _ = self.writable_repo(request, repo_type, repo_id)
        self.store.delete_ref(repo, kind, name)
        return JSONResponse({})

    def list_commits(self, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self.readable_repo(request, repo_type, repo_id)
        oid = self.store.resolve(repo, revision)
        items = [
            {
                "id": c["id"],
                "authors": [{"user": c["author"]}],
                "date": c["date"],
                "title": c["title"],
                "message": c["message"],
                "parents": c["parents"],
            }
            for c in self.store.history(repo, oid)
        ]
        return self._paginated(request, items, page_size=TREE_PAGE)

    # ---- trees ----
    @staticmethod
    def _tree_oid(entry: dict) -> str:
        if entry["lfs"]:
            return git_blob_sha1(lfs_pointer(entry["sha256"], entry["size"]))
        return entry["sha1"]

    def _file_item(self, path: str, entry: dict) -> dict:
        item = {"type": "file", "path": path, "size": entry["size"], "oid": self._tree_oid(entry)}
        if entry["lfs"]:
            item["lfs"] = {
                "oid": entry["sha256"],
                "size": entry["size"],
                "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"])),
            }
        return item

    @staticmethod
    def _dir_item(path: str, files: dict) -> dict:
        listing = "\n".join(f"{p}:{files[p]['sha256']}" for p in sorted(files) if p.startswith(path + "/"))
        return {"type": "directory", "path": path, "oid": hashlib.sha1(listing.encode()).hexdigest(), "size": 0}

    def _entries(self, files: dict, path: str, recursive: bool) -> list[dict]:
        prefix = f"{path}/" if path else ""
        files_out, dirs = [], set()
        for p in sorted(files):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix) :]
            parts = rel.split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                dirs.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                files_out.append(self._file_item(p, files[p]))
        items = [self._dir_item(d, files) for d in sorted(dirs)] + files_out
        return sorted(items, key=lambda item: item["path"])

    def list_tree(self, request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
        repo = self.readable_repo(request, repo_type, repo_id)
        oid = self.store.resolve(repo, revision)
        files = self.store.get_commit(repo, oid)["files"]
        path = path.strip("/")
        if path:
            check_path(path)
            if not any(p.startswith(path + "/") for p in files):
                raise HubError(404, f"Entry not found: {path} at {revision}", "EntryNotFound")
        recursive = request.query_params.get("recursive", "false").lower() in ("true", "1")
        return self._paginated(request, self._entries(files, path, recursive), page_size=TREE_PAGE)

    def _paginated(self, request: Request, items: list, *, page_size: int) -> Response:
        try:
            start = max(0, int(request.query_params.get("cursor", "0")))
        except ValueError:
            raise bad_request("Invalid cursor") from None
        page = items[start : start + page_size]
        headers = {}
        if start + page_size < len(items):
            params = dict(request.query_params)
            params["cursor"] = str(start + page_size)
            headers["Link"] = f'<{str(request.url).split("?")[0]}?{urlencode(params)}>; rel="next"'
        return JSONResponse(page, headers=headers)

    async def paths_info(self, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo = self.readable_repo(request, repo_type, repo_id)
        body = await self._body(request)
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                paths = json.loads(body).get("paths", [])
            except (ValueError, AttributeError):
                raise bad_request("Malformed JSON body") from None
        else:
            paths = parse_qs(body.decode("utf-8", "replace")).get("paths", [])
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise bad_request("'paths' must be a list of strings")
        files = self.store.get_commit(repo, self.store.resolve(repo, revision))["files"]
        out = []
        for path in paths:
            path = path.strip("/")
            if not path:
                continue
            check_path(path)
            if path in files:
                out.append(self._file_item(path, files[path]))
            elif any(p.startswith(path + "/") for p in files):
                out.append(self._dir_item(path, files))
        return JSONResponse(out)

    # ---- uploads ----
    async def preupload(self, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
        repo, _ = self.writable_repo(request, repo_type, repo_id)
        data = await self._json(request)
        items = data.get("files")
        if not isinstance(items, list):
            raise bad_request("'files' must be a list")
        try:
            files = self.store.get_commit(repo, self.store.resolve(repo, revision))["files"]
        except HubError:
            files = {}  # a branch about to be created: every file is new
        out = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                raise bad_request("each entry of 'files' needs a 'path'")
            path = check_path(item["path"])
            size = item.get("size") if isinstance(item.get("size"), int) else 0
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=False)
            except (ValueError, TypeError):
                sample = b""
            lfs = path.lower().endswith(LFS_EXTENSIONS) or size > LFS_THRESHOLD or b"\0" in sample
            answer = {"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False}
            if path in files:
                entry = files[path]
                answer["oid"] = entry["sha256"] if lfs else entry["sha1"]
            out.append(answer)
        return JSONResponse({"files": out, "commitOid": None})

    async def lfs_batch(self, request: Request, repo_type: str, repo_id: str, base: str) -> Response:
        data = await self._json(request)
        operation = data.get("operation")
        objects = data.get("objects")
        if operation != "upload" or not isinstance(objects, list):
            raise bad_request(
                "LFS batch: only operation 'upload' with a list of 'objects' is supported "
                "(download files through /resolve/)"
            )
        self.writable_repo(request, repo_type, repo_id)
        out = []
        for obj in objects:
            oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
            if not isinstance(oid, str) or not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int):
                raise bad_request("each LFS object needs a sha256 'oid' and an integer 'size'")
            item = {"oid": oid, "size": size, "authenticated": True}
            if size < 0 or size > self.max_upload:
                item["error"] = {"code": 422, "message": f"Object size {size} outside 0..{self.max_upload}"}
            elif not self.store.has_blob(oid, size):  # no `actions`: already stored, the client skips it
                item["actions"] = {"upload": {"href": self.upload_href(base, oid, size)}}
            out.append(item)
        return JSONResponse(
            {"transfer": "basic", "objects": out, "hash_algo": "sha256"}, media_type="application/vnd.git-lfs+json"
        )

    async def lfs_put(self, request: Request, oid: str) -> Response:
        params = request.query_params
        try:
            size, expires = int(params.get("size", "")), int(params.get("expires", ""))
        except ValueError:
            raise HubError(403, "Invalid upload URL") from None
        if (
            not re.fullmatch(r"[0-9a-f]{64}", oid)
            or expires < time.time()
            or not hmac.compare_digest(params.get("sig", ""), self._sign(oid, size, expires))
        ):
            raise HubError(403, "Invalid or expired upload URL: ask the LFS batch endpoint for a new one")
        if self.store.has_blob(oid, size):
            await _drain(request.receive)
            return Response(status_code=200)
        tmp = self.store.new_tmp_file()
        sha256, sha1 = hashlib.sha256(), git_blob_hasher(size)
        total = 0
        try:
            with open(tmp, "wb") as f:
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > size:
                        raise bad_request(f"Upload larger than the announced {size} bytes")
                    sha256.update(chunk)
                    sha1.update(chunk)
                    f.write(chunk)
            if total != size or sha256.hexdigest() != oid:
                raise bad_request(f"Upload does not match oid {oid} / size {size} (got {total} bytes)")
            with self.store.lock:
                self.store.adopt_blob(tmp, oid, sha1.hexdigest())
        finally:
            tmp.unlink(missing_ok=True)
        return Response(status_code=200)

    async def commit(self, request: Request, repo_type: str, repo_id: str, revision: str, base: str) -> Response:
        repo, user = self.writable_repo(request, repo_type, repo_id)
        if request.query_params.get("create_pr") in ("1", "true", "True"):
            raise bad_request("Pull requests are not supported by the local hub")
        body = await self._body(request)
        header, operations = None, []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if not isinstance(value, dict):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                raise bad_request(
                    f"Malformed NDJSON on line {number}: expected {{'key': ..., 'value': {{...}}}}"
                ) from None
            if key == "header":
                header = value
            elif key == "file":
                path = check_path(value.get("path"))
                if value.get("encoding", "base64") != "base64" or not isinstance(value.get("content"), str):
                    raise bad_request(f"Line {number}: inline files must be base64 'content'")
                try:
                    content = base64.b64decode(value["content"], validate=True)
                except ValueError:
                    raise bad_request(f"Line {number}: invalid base64 content for {path}") from None
                operations.append(("add", path, {**self.store.put_bytes(content), "lfs": False}))
            elif key == "lfsFile":
                path = check_path(value.get("path"))
                oid, size = value.get("oid"), value.get("size")
                if not isinstance(oid, str) or not isinstance(size, int) or value.get("algo", "sha256") != "sha256":
                    raise bad_request(f"Line {number}: lfsFile needs a sha256 'oid' and an integer 'size'")
                if not self.store.has_blob(oid, size):
                    raise bad_request(f"LFS object {oid} for {path} was not uploaded (or its size differs)")
                operations.append(
                    ("add", path, {"sha256": oid, "size": size, "sha1": self.store.blob_sha1(oid), "lfs": True})
                )
            elif key in ("deletedFile", "deletedFolder"):
                path = check_path(str(value.get("path", "")).rstrip("/"))
                operations.append(("delete" if key == "deletedFile" else "delete_folder", path, None))
            else:
                raise bad_request(f"Line {number}: unknown key {key!r}")
        if header is None or not isinstance(header.get("summary", ""), str):
            raise bad_request("The commit needs a header line with a 'summary'")
        title = header.get("summary") or "Upload files"
        message = header.get("description") or ""
        parent = header.get("parentCommit")
        if revision.startswith("refs/heads/"):
            revision = revision[len("refs/heads/") :]
        oid = self.store.commit(
            repo,
            revision,
            operations,
            title=title,
            message=str(message),
            author=user,
            parent_commit=parent if isinstance(parent, str) else None,
        )
        url = f"{repo_url(base, repo_id, repo_type)}/commit/{oid}"
        return JSONResponse({"commitUrl": url, "commitOid": oid, "pullRequestUrl": None, "success": True})

    # ---- downloads ----
    async def resolve_file(self, request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
        repo = self.readable_repo(request, repo_type, repo_id)
        oid = self.store.resolve(repo, revision)
        check_path(path)
        entry = self.store.get_commit(repo, oid)["files"].get(path)
        if entry is None:
            # With X-Repo-Commit the client caches the miss (no second request for a file that is not there).
            raise HubError(
                404, f"Entry not found: {path} at {revision}", "EntryNotFound", headers={"X-Repo-Commit": oid}
            )
        etag = entry["sha256"] if entry["lfs"] else entry["sha1"]
        size = entry["size"]
        headers = {
            "X-Repo-Commit": oid,
            "ETag": f'"{etag}"',
            "X-Linked-Etag": f'"{etag}"',
            "X-Linked-Size": str(size),
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.split('/')[-1])}",
        }
        start, end = 0, size - 1
        status = 200
        range_header = request.headers.get("range")
        if range_header:
            match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", range_header)
            if not match or (not match.group(1) and not match.group(2)):
                raise HubError(416, f"Invalid range {range_header!r}")
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start, end = max(0, size - int(match.group(2))), size - 1
            if start >= size or start > end:
                err = error_response(HubError(416, f"Range {range_header} not satisfiable for {size} bytes"))
                err.headers["Content-Range"] = f"bytes */{size}"
                return err
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = end - start + 1 if size else 0
        headers["Content-Length"] = str(length)
        media_type = "text/plain; charset=utf-8" if not entry["lfs"] else "application/octet-stream"
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=media_type)
        blob = self.store.blob_path(entry["sha256"])
        return StreamingResponse(
            _read_range(blob, start, length), status_code=status, headers=headers, media_type=media_type
        )

    async def validate_yaml(self, request: Request) -> Response:
        data = await self._json(request)
        content = data.get("content")
        if not isinstance(content, str):
            raise bad_request("'content' must be a string")
        # `content` is the whole README: only its front matter (between the first two '---') is metadata.
        try:
            found, _ = _front_matter(content)
        except _InvalidMetadata as err:
            return JSONResponse({"errors": [{"message": str(err)}], "warnings": []}, status_code=400)
        if not found:
            return JSONResponse({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata"}]})
        return JSONResponse({"errors": [], "warnings": []})


def _read_range(path: Path, start: int, length: int):
    with open(path, "rb") as f:
        f.seek(start)
        remaining = length
        while remaining > 0:
            chunk = f.read(min(1 << 20, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


# ---- running it ---------------------------------------------------------------------------------------------------
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
        return self.hub.faults

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


def start_background(
    root, *, host: str = "127.0.0.1", port: int = 0, token_file=None, tokens=None, timeout: float = 20.0
) -> RunningHub:
    """Start the local hub in a daemon thread; returns once it accepts connections."""
    import uvicorn

    hub = LocalHub(root, token_file=token_file, tokens=tokens)
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
    return RunningHub(f"http://{display_host}:{bound}", bound, hub.store.root, hub, server, thread)


def _wait_accepting(host: str, port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def serve(root, *, host: str = "127.0.0.1", port: int = 8787, token_file=None) -> None:
    """Run the local hub in the foreground (the `babyhub hub serve` command)."""
    import uvicorn

    hub = LocalHub(root, token_file=token_file)
    uvicorn.run(hub.build_app(), host=host, port=port, log_level="info", lifespan="off")
