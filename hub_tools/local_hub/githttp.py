"""git over smart HTTP and the Git LFS API, for the repos of a `GitStore`: an ASGI piece the local hub mounts.

    githttp = GitHttp(store, check_token=lambda token: "babyhub" if token in tokens else None)
    app = githttp.wrap(app)        # git and LFS paths go to githttp, everything else to `app`

What it serves, for models at the root and under `/datasets/` and `/spaces/`, with or without `.git`:

    GET  /NS/NAME.git/info/refs?service=git-upload-pack|git-receive-pack    ref advertisement
    POST /NS/NAME.git/git-upload-pack                                        clone, fetch, pull
    POST /NS/NAME.git/git-receive-pack                                       push
    POST /NS/NAME.git/info/lfs/objects/batch                                 LFS batch API (download + upload)
    GET|PUT /NS/NAME.git/info/lfs/objects/<sha256>?...&sig=                  LFS transfers (signed, expiring)
    POST /NS/NAME.git/info/lfs/locks/verify                                  no locks (so `git push` is quiet)

Who may do what is the Hub's rule: anonymous clone/fetch and LFS download of public repos; a token (HTTP basic,
the token as password, as the Hub accepts it; or `Authorization: Bearer`) for private repos and for every
write. Auth is checked before any body is read. A missing repo and a private one look the same without a token
(401, with `WWW-Authenticate` so git asks for credentials).

The git protocol itself is dulwich's (`UploadPackHandler`, `ReceivePackHandler`), run in a worker thread with
its own repository object so a long clone never holds the store's locks; a push's ref updates go through
`GitStore.apply_push` (compare-and-swap, the Hub's checks: no plain file over 10 MB, LFS objects uploaded first,
`main` never deleted), so a commit made by `git push` is what every `huggingface_hub` call sees next, and vice
versa. LFS transfer URLs carry an HMAC grant (repo, object, size, expiry) signed with the store's persisted key:
`git lfs` and `huggingface_hub` PUT without an auth header, and a grant survives a server restart.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from urllib.parse import unquote, urlencode

import anyio
from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo as DulwichRepo
from dulwich.server import ReceivePackHandler, UploadPackHandler
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from hub_tools.local_hub.errors import from_os_error, header_value
from hub_tools.local_hub.gitplumbing import fsync_dir
from hub_tools.local_hub.gitstore import ZERO, GitStore, RefUpdate, Repo
from hub_tools.repos import SHA256_PATTERN, URL_PREFIXES, git_blob_hasher

logger = logging.getLogger("babyhub.local_hub.githttp")

LFS_JSON = "application/vnd.git-lfs+json"
SERVICES = ("git-upload-pack", "git-receive-pack")
MAX_UPLOAD_PACK_REQUEST = 64 * 1024 * 1024  # wants and haves: a few MB even for a big repo
MAX_RECEIVE_PACK = 2 * 1024**3  # plain files are at most 10 MB each (LFS carries the rest)
MAX_LFS_BATCH = 8 * 1024 * 1024  # about 50,000 objects
MAX_LFS_OBJECT = 64 * 1024**3
WRITE_BATCH = 1024 * 1024  # an upload is hashed and written by the thread pool this many bytes at a time
GRANT_SECONDS = 24 * 3600
REALM = 'Basic realm="babyhub local hub", charset="UTF-8"'


class GitHttpError(Exception):
    """A refusal: status, message, and whether git should be asked for credentials."""

    def __init__(self, status: int, message: str, *, challenge: bool = False):
        super().__init__(message)
        self.status = status
        self.message = message
        self.challenge = challenge


@dataclass(frozen=True)
class GitRoute:
    """A parsed git/LFS path: the repo and what is asked of it (`action`: info/refs, a service, lfs-*)."""

    repo_type: str
    repo_id: str
    action: str
    oid: str | None = None

    @property
    def url_path(self) -> str:
        return f"/{URL_PREFIXES[self.repo_type]}{self.repo_id}.git"


def parse_route(method: str, raw_path: str) -> GitRoute | None:
    """The git/LFS route of a raw request path, or None when the path is not one (the hub's API takes it)."""
    segs = raw_path.strip("/").split("/")
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(segs[0], "model")
    if repo_type != "model":
        segs = segs[1:]
    if len(segs) < 3:
        return None
    namespace, name, rest = unquote(segs[0]), unquote(segs[1]), segs[2:]
    if name.endswith(".git"):
        name = name[:-4]
    repo_id = f"{namespace}/{name}"
    if rest == ["info", "refs"] and method == "GET":
        return GitRoute(repo_type, repo_id, "info/refs")
    if len(rest) == 1 and rest[0] in SERVICES and method == "POST":
        return GitRoute(repo_type, repo_id, rest[0])
    if rest == ["info", "lfs", "objects", "batch"] and method == "POST":
        return GitRoute(repo_type, repo_id, "lfs-batch")
    if rest == ["info", "lfs", "locks", "verify"] and method == "POST":
        return GitRoute(repo_type, repo_id, "lfs-locks-verify")
    if len(rest) == 4 and rest[:3] == ["info", "lfs", "objects"] and method in ("GET", "HEAD", "PUT"):
        return GitRoute(repo_type, repo_id, "lfs-download" if method != "PUT" else "lfs-upload", rest[3])
    return None


def token_of(headers) -> str | None:
    """The token of a request: `Basic` (the password, or the user name when the password is empty) or `Bearer`.

    Raises GitHttpError(401) for a malformed header or a token that is not printable ASCII.
    """
    header = headers.get("authorization", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    token = None
    if scheme.lower() == "bearer":
        token = value.strip()
    elif scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise GitHttpError(401, "Malformed basic credentials", challenge=True) from None
        token = password or user
    if not token or not token.isascii() or not token.isprintable():
        raise GitHttpError(401, "Invalid credentials", challenge=True)
    return token


class GitHttp:
    """The git smart HTTP + LFS endpoints of a GitStore (see the module docstring).

    Args:
        store: the GitStore whose repos are served.
        check_token: token -> its user, or None when the token is not valid.
        can_read: (user or None, repo) -> may clone it and download its LFS objects (default: public, or a user).
        can_write: (user, repo) -> may push to it (default: any user).
        can_upload: (user, repo) -> may upload LFS objects for it, e.g. for a pull request (default: any user).
        find_repo: (repo type, repo id) -> the Repo or None (default: the store's exact lookup).
        max_receive_pack: largest pack a push may send (bytes).
        run: `await run(fn, *args)` runs store work off the event loop (default: anyio's thread pool).
    """

    def __init__(
        self,
        store: GitStore,
        *,
        check_token: Callable[[str], object | None],
        can_read: Callable | None = None,
        can_write: Callable | None = None,
        can_upload: Callable | None = None,
        find_repo: Callable | None = None,
        max_receive_pack: int = MAX_RECEIVE_PACK,
        run: Callable | None = None,
    ):
        self.store = store
        self.check_token = check_token
        self.can_read = can_read or (lambda user, repo: user is not None or not repo.private)
        self.can_write = can_write or (lambda user, repo: user is not None)
        self.can_upload = can_upload or self.can_write
        self.find_repo = find_repo or store.get_repo
        self.max_receive_pack = max_receive_pack
        self._key = store.signing_key()
        self.run = run or _to_thread

    # ---- mounting ----------------------------------------------------------------------------------------------
    def wrap(self, app):
        """An ASGI app that sends git and LFS paths here and everything else to `app`."""

        async def dispatch(scope, receive, send):
            if scope["type"] == "http" and self.route_of(scope) is not None:
                return await self(scope, receive, send)
            return await app(scope, receive, send)

        return dispatch

    @staticmethod
    def route_of(scope) -> GitRoute | None:
        raw = scope.get("raw_path", b"").decode("latin-1").split("?")[0] or scope.get("path", "")
        return parse_route(scope["method"], raw)

    async def __call__(self, scope, receive, send):
        request = Request(scope, receive)
        try:
            route = self.route_of(scope)
            if route is None:
                raise GitHttpError(404, "Not a git or LFS path")
            response = await self.handle(request, route)
        except GitHttpError as err:
            response = self._error(request, err)
        except RecursionError:
            response = self._error(request, GitHttpError(400, "The request is nested too deeply"))
        except OSError as err:
            known = from_os_error(err)
            if known is None:
                logger.exception("git http: unexpected error on %s %s", request.method, request.url.path)
                known = GitHttpError(500, "Internal error in the local hub")
            response = self._error(request, GitHttpError(known.status, known.message))
        except Exception as err:  # a bug or a damaged store must not leak a traceback
            status = getattr(err, "status", 500)
            message = getattr(err, "message", "Internal error in the local hub")
            if status >= 500:
                logger.exception("git http: unexpected error on %s %s", request.method, request.url.path)
            response = self._error(request, GitHttpError(status, message))
        await response(scope, receive, send)

    @staticmethod
    def _error(request: Request, err: GitHttpError) -> Response:
        headers = {"WWW-Authenticate": REALM} if err.challenge or err.status == 401 else {}
        headers["X-Error-Message"] = header_value(err.message)
        if "/info/lfs/" in request.url.path:
            body = {"message": err.message, "error": err.message}  # git-lfs reads `message`, huggingface_hub `error`
            return JSONResponse(body, err.status, headers=headers, media_type=LFS_JSON)
        return Response(err.message + "\n", err.status, headers=headers, media_type="text/plain")

    # ---- auth --------------------------------------------------------------------------------------------------
    def _user(self, request: Request) -> str | None:
        token = token_of(request.headers)
        if token is None:
            return None
        user = self.check_token(token)
        if user is None:
            raise GitHttpError(401, "Invalid credentials", challenge=True)
        return user

    def _repo(self, request: Request, route: GitRoute, *, write: bool) -> tuple[Repo, object | None]:
        """The repo if this request may read it (write=False) or push to it (write=True); else 401/403/404.

        A repo the user may not read (private, or gated beyond the user's access) looks like a missing one.
        """
        user = self._user(request)
        try:
            repo = self.find_repo(route.repo_type, route.repo_id)
        except Exception:  # an invalid name is a repo that does not exist
            repo = None
        if repo is not None and not self.can_read(user, repo):
            repo = None
        if user is None and (write or repo is None):
            what = "Pushing needs a token" if write else "Repository not found, or it needs a token"
            raise GitHttpError(401, f"{what}: {route.repo_type} {route.repo_id}", challenge=True)
        if repo is None:
            raise GitHttpError(404, f"Repository not found: {route.repo_type} {route.repo_id}")
        if write and not self.can_write(user, repo):
            raise GitHttpError(403, f"This token may not push to {route.repo_type} {repo.repo_id}")
        return repo, user

    # ---- routes ------------------------------------------------------------------------------------------------
    async def handle(self, request: Request, route: GitRoute) -> Response:
        if route.action == "info/refs":
            service = request.query_params.get("service")
            if service not in SERVICES:
                raise GitHttpError(403, "Only the smart protocol is served: use git 1.6.6 or newer")
            repo, _ = self._repo(request, route, write=service == "git-receive-pack")
            return self._run_service(repo, service, advertise=True, body=None)
        if route.action in SERVICES:
            repo, _ = self._repo(request, route, write=route.action == "git-receive-pack")
            if request.headers.get("content-type") != f"application/x-{route.action}-request":
                raise GitHttpError(415, f"Expected Content-Type application/x-{route.action}-request")
            if route.action == "git-upload-pack":
                body = await _read_body(request, MAX_UPLOAD_PACK_REQUEST)
                return self._run_service(repo, route.action, advertise=False, body=BytesIO(body))
            path = await self._spool(request)
            try:
                return self._run_service(repo, route.action, advertise=False, body=open(path, "rb"), cleanup=path)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        if route.action == "lfs-batch":
            return await self.lfs_batch(request, route)
        if route.action == "lfs-locks-verify":
            self._repo(request, route, write=True)
            await _read_body(request, 1024 * 1024)
            return JSONResponse({"ours": [], "theirs": []}, media_type=LFS_JSON)
        if route.action == "lfs-download":
            return self.lfs_download(request, route)
        return await self.lfs_upload(request, route)

    async def _spool(self, request: Request):
        """Write a push's pack to a temp file under the root (bounded), gunzipping if the client gzipped it."""
        path = self.store.new_tmp_file()
        gzipped = request.headers.get("content-encoding") == "gzip"
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        total = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in request.stream():
                    for data in _inflated(inflate, chunk):
                        total += len(data)
                        if total > self.max_receive_pack:
                            raise GitHttpError(413, f"Push larger than {self.max_receive_pack} bytes: use git-lfs")
                        await anyio.to_thread.run_sync(f.write, data)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _run_service(self, repo: Repo, service: str, *, advertise: bool, body, cleanup=None) -> Response:
        """Run dulwich's handler for `service` in a thread, streaming what it writes (with backpressure)."""
        store = self.store
        chunks: queue.Queue = queue.Queue(maxsize=32)
        cancelled = threading.Event()

        def write(data: bytes) -> int:
            while True:
                if cancelled.is_set():
                    raise ConnectionAbortedError("the client went away")
                try:
                    chunks.put(bytes(data), timeout=0.5)
                    return len(data)
                except queue.Full:
                    continue

        def run() -> None:
            git = DulwichRepo(str(repo.dir))
            try:
                proto = ReceivableProtocol(body.read if body is not None else BytesIO().read, write)
                backend = _Backend(git)
                if service == "git-upload-pack":
                    handler = UploadPackHandler(backend, ["/"], proto, stateless_rpc=True, advertise_refs=advertise)
                else:
                    handler = _ReceivePack(store, repo, backend, ["/"], proto, advertise_refs=advertise)
                if advertise:
                    proto.write_pkt_line(f"# service={service}\n".encode())
                    proto.write_pkt_line(None)
                handler.handle()
            except ConnectionAbortedError:
                pass
            except Exception:
                logger.exception("git http: %s on %s failed", service, repo.repo_id)
            finally:
                git.close()
                if body is not None:
                    body.close()
                if cleanup is not None:
                    cleanup.unlink(missing_ok=True)
                while True:
                    try:
                        chunks.put(None, timeout=0.5)
                        break
                    except queue.Full:
                        if cancelled.is_set():
                            break

        thread = threading.Thread(target=run, name=f"git-{service}", daemon=True)

        def stream() -> Iterator[bytes]:
            thread.start()
            try:
                while True:
                    data = chunks.get()
                    if data is None:
                        return
                    yield data
            finally:
                cancelled.set()

        kind = "advertisement" if advertise else "result"
        headers = {"Cache-Control": "no-cache, max-age=0, must-revalidate", "Expires": "Fri, 01 Jan 1980 00:00:00 GMT"}
        return StreamingResponse(stream(), media_type=f"application/x-{service}-{kind}", headers=headers)

    # ---- LFS ---------------------------------------------------------------------------------------------------
    def _sign(self, op: str, route: GitRoute, oid: str, size: int, expires: int) -> str:
        message = f"{op}:{route.repo_type}:{route.repo_id}:{oid}:{size}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _grant_href(self, request: Request, op: str, route: GitRoute, oid: str, size: int) -> str:
        expires = int(time.time()) + GRANT_SECONDS
        query = urlencode({"size": size, "expires": expires, "sig": self._sign(op, route, oid, size, expires)})
        return f"{str(request.base_url).rstrip('/')}{route.url_path}/info/lfs/objects/{oid}?{query}"

    def _check_grant(self, request: Request, op: str, route: GitRoute) -> int:
        params = request.query_params
        try:
            size, expires = int(params.get("size", "")), int(params.get("expires", ""))
        except ValueError:
            raise GitHttpError(403, "Invalid LFS transfer URL") from None
        oid = route.oid or ""
        if (
            not SHA256_PATTERN.match(oid)
            or expires < time.time()
            or not hmac.compare_digest(params.get("sig", ""), self._sign(op, route, oid, size, expires))
        ):
            raise GitHttpError(403, "Invalid or expired LFS transfer URL: ask the batch endpoint for a new one")
        return size

    async def lfs_batch(self, request: Request, route: GitRoute) -> Response:
        """The Git LFS batch API: which objects to send or fetch, with a signed URL for each."""
        # Whether this is a read or a write is in the body: check what can be checked before reading it (the
        # token, the repo's existence and visibility), then read it with a small limit.
        repo, user = self._repo(request, route, write=False)
        body = await _read_body(request, MAX_LFS_BATCH)
        return await self.run(self._batch, request, route, repo, user, body)

    def _batch(self, request: Request, route: GitRoute, repo: Repo, user: str | None, body: bytes) -> Response:
        data = _parse_json(body)
        operation, objects = data.get("operation"), data.get("objects")
        if operation not in ("download", "upload") or not isinstance(objects, list):
            raise GitHttpError(422, "LFS batch needs 'operation' (download or upload) and a list of 'objects'")
        if data.get("hash_algo", "sha256") != "sha256":
            raise GitHttpError(409, "Only sha256 LFS objects are supported")
        if operation == "upload" and user is None:
            raise GitHttpError(401, f"Uploading needs a token: {route.repo_type} {route.repo_id}", challenge=True)
        if operation == "upload" and not self.can_upload(user, repo):
            raise GitHttpError(403, f"This token may not upload to {route.repo_type} {repo.repo_id}")
        known = self.store.lfs_objects(repo) if operation == "download" else None
        out = []
        for obj in objects:
            oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
            if not isinstance(oid, str) or not SHA256_PATTERN.match(oid) or type(size) is not int:
                raise GitHttpError(422, "Each LFS object needs a sha256 'oid' and an integer 'size'")
            item = {"oid": oid, "size": size, "authenticated": True}
            if operation == "download":
                if oid in known and self.store.has_lfs_object(oid, size):
                    href = self._grant_href(request, "download", route, oid, size)
                    item["actions"] = {"download": {"href": href, "expires_in": GRANT_SECONDS}}
                else:
                    item["error"] = {"code": 404, "message": f"Object {oid} does not exist in {route.repo_id}"}
            elif size < 0 or size > MAX_LFS_OBJECT:
                item["error"] = {"code": 422, "message": f"Object size {size} outside 0..{MAX_LFS_OBJECT}"}
            elif not self.store.has_lfs_object(oid, size):
                href = self._grant_href(request, "upload", route, oid, size)
                item["actions"] = {"upload": {"href": href, "expires_in": GRANT_SECONDS}}
            else:  # no `actions`: the server has it and the client skips it; gc must spare it until it is used
                self.store.freshen_lfs_object(oid)
            out.append(item)
        return JSONResponse({"transfer": "basic", "objects": out, "hash_algo": "sha256"}, media_type=LFS_JSON)

    def lfs_download(self, request: Request, route: GitRoute) -> Response:
        size = self._check_grant(request, "download", route)
        path = self.store.lfs_path(route.oid)
        if not self.store.has_lfs_object(route.oid, size):
            raise GitHttpError(404, f"Object {route.oid} does not exist")
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", request.headers.get("range", "").strip())
        headers = {"Content-Length": str(size), "Accept-Ranges": "bytes"}
        status = 200
        if match and 0 < int(match.group(1)) < size:
            start, status = int(match.group(1)), 206
            headers.update({"Content-Length": str(size - start), "Content-Range": f"bytes {start}-{size - 1}/{size}"})
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type="application/octet-stream")
        return StreamingResponse(
            _file_chunks(path, start), status_code=status, headers=headers, media_type="application/octet-stream"
        )

    async def lfs_upload(self, request: Request, route: GitRoute) -> Response:
        """A signed PUT of one LFS object: streamed to a temp file, hashed, checked, then moved into the pool."""
        size = self._check_grant(request, "upload", route)
        oid = route.oid
        if self.store.has_lfs_object(oid, size):
            await _drain(request)
            return Response(status_code=200)
        tmp = self.store.new_tmp_file()
        sha256, sha1 = hashlib.sha256(), git_blob_hasher(size)
        total = 0

        def absorb(f, chunks: list[bytes]) -> None:
            data = b"".join(chunks)
            sha256.update(data)
            sha1.update(data)
            f.write(data)

        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                pending, pending_bytes = [], 0
                async for chunk in request.stream():
                    total += len(chunk)
                    if total > size:
                        raise GitHttpError(400, f"Upload larger than the announced {size} bytes")
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    if pending_bytes >= WRITE_BATCH:  # one trip to the pool per MiB, not per socket read
                        await self.run(absorb, f, pending)
                        pending, pending_bytes = [], 0
                await self.run(absorb, f, pending)
            if total != size or sha256.hexdigest() != oid:
                raise GitHttpError(400, f"Upload does not match oid {oid} / size {size} (got {total} bytes)")
            await self.run(self.store.adopt_lfs_object, tmp, oid, sha1.hexdigest())
        finally:
            tmp.unlink(missing_ok=True)
        return Response(status_code=200)


class _Backend:
    """dulwich's server backend, serving one already opened repository."""

    def __init__(self, git: DulwichRepo):
        self.git = git

    def open_repository(self, path: str) -> DulwichRepo:
        return self.git


class _ReceivePack(ReceivePackHandler):
    """dulwich's receive-pack, with ref updates going through `GitStore.apply_push` (its checks and its locks)."""

    def __init__(self, store: GitStore, repo: Repo, backend, args, proto, *, advertise_refs: bool):
        super().__init__(backend, args, proto, stateless_rpc=True, advertise_refs=advertise_refs)
        self.store = store
        self.hub_repo = repo
        self.repo.object_store.fsync_object_files = True

    def _apply_pack(self, refs):
        if any(new != ZERO.encode() for _old, new, _ref in refs):
            try:
                self.repo.object_store.add_thin_pack(self.proto.read, getattr(self.proto, "recv", None))
                fsync_dir(self.repo.object_store.pack_dir)
            except Exception as err:  # a broken pack: nothing moves, a later gc removes what landed
                yield (b"unpack", str(err).replace("\n", " ").encode("utf-8", "replace"))
                return
        yield (b"unpack", b"ok")
        updates = [RefUpdate(ref.decode("utf-8", "replace"), old.decode(), new.decode()) for old, new, ref in refs]
        result = self.store.apply_push(self.hub_repo, updates)
        for update in updates:
            reason = result.get(update.ref)
            yield (update.ref.encode(), b"ok" if reason is None else reason.replace("\n", " ").encode("utf-8"))


# ---- request bodies ------------------------------------------------------------------------------------------------
async def _read_body(request: Request, limit: int) -> bytes:
    """The request body (gunzipped if the client gzipped it), refused past `limit` bytes either way."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise GitHttpError(413, f"Request body too large ({declared} bytes, limit {limit})")
    gzipped = request.headers.get("content-encoding") == "gzip"
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
    parts, total = [], 0
    async for chunk in request.stream():
        for data in _inflated(inflate, chunk):
            total += len(data)
            if total > limit:
                raise GitHttpError(413, f"Request body too large (limit {limit} bytes, unzipped)")
            parts.append(data)
    return b"".join(parts)


def _inflated(inflate, chunk: bytes, step: int = 1 << 20) -> Iterator[bytes]:
    """`chunk` as is, or gunzipped at most `step` bytes at a time (a zip bomb never lands in memory whole)."""
    if inflate is None:
        yield chunk
        return
    try:
        data = inflate.decompress(chunk, step)
        while True:
            if data:
                yield data
            if not inflate.unconsumed_tail:
                return
            data = inflate.decompress(inflate.unconsumed_tail, step)
    except zlib.error:
        raise GitHttpError(400, "Malformed gzip body") from None


def _parse_json(body: bytes) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise GitHttpError(422, "Malformed JSON body") from None
    if not isinstance(data, dict):
        raise GitHttpError(422, "Expected a JSON object")
    return data


async def _to_thread(fn: Callable, *args):
    return await anyio.to_thread.run_sync(functools.partial(fn, *args))


async def _drain(request: Request) -> None:
    async for _ in request.stream():
        pass


def _file_chunks(path, start: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        while chunk := f.read(1 << 20):
            yield chunk
