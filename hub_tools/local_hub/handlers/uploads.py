"""Writing: preupload, the LFS batch and upload, commits, and validate-yaml.

A client uploads a commit in up to three steps, as on the Hub: `preupload` says which files go through LFS
(by extension, size, or binary content), the LFS batch hands out upload URLs for the blobs the store lacks
(none for a blob already stored: that is how a retried push skips what it sent before), and the commit
(NDJSON) carries small files inline and names LFS files by their sha256.
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub.cards import InvalidMetadata, read_front_matter
from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.local_hub.storage import check_path
from hub_tools.local_hub.wire import base_url, drain, read_body, read_json
from hub_tools.repos import SHA256_PATTERN, git_blob_hasher, repo_url

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
UPLOAD_GRANT_SECONDS = 24 * 3600


class UploadGrants:
    """Signed, expiring LFS upload URLs: the LFS PUT carries no auth header, so its URL carries the grant."""

    def __init__(self):
        self._secret = secrets.token_bytes(32)

    def _sign(self, oid: str, size: int, expires: int) -> str:
        return hmac.new(self._secret, f"{oid}:{size}:{expires}".encode(), hashlib.sha256).hexdigest()

    def href(self, base: str, oid: str, size: int) -> str:
        expires = int(time.time()) + UPLOAD_GRANT_SECONDS
        query = urlencode({"size": size, "expires": expires, "sig": self._sign(oid, size, expires)})
        return f"{base}/api/lfs-upload/{oid}?{query}"

    def check(self, oid: str, params) -> int:
        """The size `params` grant an upload of `oid` for; a 403 when the grant is forged or expired."""
        try:
            size, expires = int(params.get("size", "")), int(params.get("expires", ""))
        except ValueError:
            raise HubError(403, "Invalid upload URL") from None
        if (
            not SHA256_PATTERN.match(oid)
            or expires < time.time()
            or not hmac.compare_digest(params.get("sig", ""), self._sign(oid, size, expires))
        ):
            raise HubError(403, "Invalid or expired upload URL: ask the LFS batch endpoint for a new one")
        return size


async def preupload(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.max_api_body)
    items = data.get("files")
    if not isinstance(items, list):
        raise bad_request("'files' must be a list")
    try:
        files = hub.store.get_commit(repo, hub.store.resolve(repo, revision))["files"]
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


async def lfs_batch(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    data = await read_json(request, hub.max_api_body)
    operation = data.get("operation")
    objects = data.get("objects")
    if operation != "upload" or not isinstance(objects, list):
        raise bad_request(
            "LFS batch: only operation 'upload' with a list of 'objects' is supported "
            "(download files through /resolve/)"
        )
    hub.writable_repo(request, repo_type, repo_id)
    out = []
    for obj in objects:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not isinstance(oid, str) or not SHA256_PATTERN.match(oid) or not isinstance(size, int):
            raise bad_request("each LFS object needs a sha256 'oid' and an integer 'size'")
        item = {"oid": oid, "size": size, "authenticated": True}
        if size < 0 or size > hub.max_upload:
            item["error"] = {"code": 422, "message": f"Object size {size} outside 0..{hub.max_upload}"}
        elif not hub.store.has_blob(oid, size):  # no `actions`: already stored, the client skips it
            item["actions"] = {"upload": {"href": hub.upload_grants.href(base_url(request), oid, size)}}
        out.append(item)
    return JSONResponse(
        {"transfer": "basic", "objects": out, "hash_algo": "sha256"}, media_type="application/vnd.git-lfs+json"
    )


async def lfs_put(hub, request: Request, oid: str) -> Response:
    """PUT /api/lfs-upload/{oid}?size&expires&sig: stream the blob to a temp file, keep it only if it hashes right."""
    size = hub.upload_grants.check(oid, request.query_params)
    if hub.store.has_blob(oid, size):
        await drain(request.receive)
        return Response(status_code=200)
    tmp = hub.store.new_tmp_file()
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
        with hub.store.lock:
            hub.store.adopt_blob(tmp, oid, sha1.hexdigest())
    finally:
        tmp.unlink(missing_ok=True)
    return Response(status_code=200)


def _read_commit(store, body: bytes) -> tuple[dict, list]:
    """The header and the store operations of an NDJSON commit body; a 400 naming the line that is wrong."""
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
            operations.append(("add", path, {**store.put_bytes(content), "lfs": False}))
        elif key == "lfsFile":
            path = check_path(value.get("path"))
            oid, size = value.get("oid"), value.get("size")
            if not isinstance(oid, str) or not isinstance(size, int) or value.get("algo", "sha256") != "sha256":
                raise bad_request(f"Line {number}: lfsFile needs a sha256 'oid' and an integer 'size'")
            if not store.has_blob(oid, size):
                raise bad_request(f"LFS object {oid} for {path} was not uploaded (or its size differs)")
            operations.append(("add", path, {"sha256": oid, "size": size, "sha1": store.blob_sha1(oid), "lfs": True}))
        elif key in ("deletedFile", "deletedFolder"):
            path = check_path(str(value.get("path", "")).rstrip("/"))
            operations.append(("delete" if key == "deletedFile" else "delete_folder", path, None))
        else:
            raise bad_request(f"Line {number}: unknown key {key!r}")
    if header is None or not isinstance(header.get("summary", ""), str):
        raise bad_request("The commit needs a header line with a 'summary'")
    return header, operations


async def commit(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    repo, user = hub.writable_repo(request, repo_type, repo_id)
    if request.query_params.get("create_pr") in ("1", "true", "True"):
        raise bad_request("Pull requests are not supported by the local hub")
    header, operations = _read_commit(hub.store, await read_body(request, hub.max_api_body))
    parent = header.get("parentCommit")
    if revision.startswith("refs/heads/"):
        revision = revision[len("refs/heads/") :]
    oid = hub.store.commit(
        repo,
        revision,
        operations,
        title=header.get("summary") or "Upload files",
        message=str(header.get("description") or ""),
        author=user,
        parent_commit=parent if isinstance(parent, str) else None,
    )
    url = f"{repo_url(base_url(request), repo_id, repo_type)}/commit/{oid}"
    return JSONResponse({"commitUrl": url, "commitOid": oid, "pullRequestUrl": None, "success": True})


async def validate_yaml(hub, request: Request) -> Response:
    data = await read_json(request, hub.max_api_body)
    content = data.get("content")
    if not isinstance(content, str):
        raise bad_request("'content' must be a string")
    # `content` is the whole README: only its front matter (between the first two '---') is metadata.
    try:
        found, _ = read_front_matter(content)
    except InvalidMetadata as err:
        return JSONResponse({"errors": [{"message": str(err)}], "warnings": []}, status_code=400)
    if not found:
        return JSONResponse({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata"}]})
    return JSONResponse({"errors": [], "warnings": []})
