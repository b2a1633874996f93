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
from hub_tools.local_hub.handlers import discussions
from hub_tools.local_hub.metadata import CARD_PATH, MAX_CARD_SIZE, check_readme
from hub_tools.local_hub.storage import check_path
from hub_tools.local_hub.wire import base_url, drain, read_body, read_json
from hub_tools.repos import PR_REF_PATTERN, SHA256_PATTERN, git_blob_hasher, repo_url

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
    # Uploading changes nothing anyone sees: a user who may open a pull request may upload for it.
    repo, _ = hub.writable_repo(request, repo_type, repo_id, propose=True)
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
    hub.writable_repo(request, repo_type, repo_id, propose=True)
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
    """The header and the store operations of an NDJSON commit body; a 400 naming the line that is wrong.

    An `lfsFile` without `size` is a copy of an LFS file (`CommitOperationCopy`, `HfFileSystem.cp_file`): its
    entry is completed by `_complete_copies`, which checks that the repo holds that object.
    """
    header, operations = None, []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if not isinstance(value, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError):
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
            if (
                not isinstance(oid, str)
                or not SHA256_PATTERN.match(oid)
                or not isinstance(size, int | None)
                or isinstance(size, bool)
                or value.get("algo", "sha256") != "sha256"
            ):
                raise bad_request(
                    f"Line {number}: lfsFile needs a sha256 'oid' (and an integer 'size', except for a copy)"
                )
            if size is None:
                operations.append(("copy", path, {"sha256": oid}))
                continue
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


def _complete_copies(store, repo, operations: list) -> list:
    """Turn each copy (an LFS oid without size) into an add of the file entry of this repo holding that object.

    The object must be one the repo already holds on some branch, tag or pull request: a content-addressed store
    must not hand out another repo's (maybe private) object to whoever knows its hash.
    """
    wanted = {entry["sha256"] for kind, _, entry in operations if kind == "copy"}
    if not wanted:
        return operations
    found: dict[str, dict] = {}
    refs = store.refs(repo)
    heads = [*refs["branches"].values(), *refs["tags"].values(), *store.pr_refs(repo).values()]
    for head in dict.fromkeys(heads):
        for entry in store.get_commit(repo, head)["files"].values():
            if entry["sha256"] in wanted and entry["lfs"]:
                found.setdefault(entry["sha256"], dict(entry))
        if len(found) == len(wanted):
            break
    out = []
    for kind, path, entry in operations:
        if kind == "copy":
            if entry["sha256"] not in found:
                raise bad_request(
                    f"Cannot copy LFS object {entry['sha256']} to {path}: {repo.repo_id} holds no file with it on "
                    "any branch, tag or pull request; upload the file instead"
                )
            kind, entry = "add", found[entry["sha256"]]
        out.append((kind, path, entry))
    return out


def _check_card(store, repo, operations: list) -> None:
    """Refuse a README.md whose metadata the Hub would refuse (a 400 naming each broken rule)."""
    for kind, path, entry in operations:
        if kind != "add" or path != CARD_PATH:
            continue
        if entry["size"] > MAX_CARD_SIZE:
            raise bad_request(f"README.md is {entry['size']} bytes: a model card may be at most {MAX_CARD_SIZE}")
        text = store.read_bytes(repo, entry).decode("utf-8", "replace")
        try:
            check_readme(text, repo.repo_type)
        except InvalidMetadata as err:
            raise bad_request(str(err)) from None


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true")


async def commit(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    """POST .../commit/{revision}: a commit on a branch or on `refs/pr/N`; with `?create_pr=1`, a new pull request.

    A pull request is opened by anyone with a write token who can read the repo; its commit lands on `refs/pr/N`,
    never on the branch it targets.
    """
    create_pr = _flag(request, "create_pr")
    pr_num = int(revision[len("refs/pr/") :]) if PR_REF_PATTERN.match(revision) else None
    record = None
    if pr_num is not None and not create_pr:
        repo, user, record = discussions.pull_request_for_push(hub, request, repo_type, repo_id, pr_num)
    else:
        repo, user = hub.writable_repo(request, repo_type, repo_id, propose=create_pr)
    if revision.startswith("refs/heads/"):
        revision = revision[len("refs/heads/") :]
    header, operations = _read_commit(hub.store, await read_body(request, hub.max_api_body))
    operations = _complete_copies(hub.store, repo, operations)
    _check_card(hub.store, repo, operations)
    parent = header.get("parentCommit")
    if parent is not None and not isinstance(parent, str):
        raise bad_request("'parentCommit' must be a commit id (a string)")
    title = header.get("summary") or "Upload files"
    message = str(header.get("description") or "")
    if create_pr:
        if pr_num is not None:
            raise bad_request(f"Cannot open a pull request on {revision}: target a branch")
        head = hub.store.resolve(repo, revision)
        if parent and parent != head:
            raise HubError(412, f"A commit has happened since {parent}. Please refresh and try again.")
        _check_deletions(hub.store, repo, head, operations)
        record = discussions.open_pull_request(hub, repo, user, revision, title, message)
        pr_num, revision = record["num"], f"refs/pr/{record['num']}"
        parent = None
    try:
        oid = hub.store.commit(
            repo, revision, operations, title=title, message=message, author=user.name, parent_commit=parent
        )
    except HubError:
        if create_pr:  # the pull request never had a commit: forget it (its number is not reused)
            hub.discussions.delete(repo, pr_num)
        raise
    url = repo_url(base_url(request), repo.repo_id, repo.repo_type)
    pr_url = None
    if pr_num is not None:
        discussions.record_commit(hub, repo, pr_num, user, title, oid)
        pr_url = f"{url}/discussions/{pr_num}"
    if hub.spaces is not None and repo.repo_type == "space" and pr_num is None:
        hub.spaces.changed(repo)
    return JSONResponse(
        {"commitUrl": f"{url}/commit/{oid}", "commitOid": oid, "pullRequestUrl": pr_url, "success": True}
    )


def _check_deletions(store, repo, head: str, operations: list) -> None:
    """Refuse a pull request whose deletions name files its target lacks, before the pull request is opened."""
    files = store.get_commit(repo, head)["files"]
    for kind, path, _ in operations:
        if kind == "delete" and path not in files:
            raise HubError(404, f"File to delete not found: {path}", "EntryNotFound")
        if kind == "delete_folder" and not any(p.startswith(path.rstrip("/") + "/") for p in files):
            raise HubError(404, f"Folder to delete not found: {path}", "EntryNotFound")


async def validate_yaml(hub, request: Request) -> Response:
    data = await read_json(request, hub.max_api_body)
    content = data.get("content")
    if not isinstance(content, str):
        raise bad_request("'content' must be a string")
    repo_type = data.get("repoType") or "model"
    if repo_type not in ("model", "dataset", "space"):
        raise bad_request("'repoType' must be model, dataset or space")
    # `content` is the whole README: only its front matter (between the first two '---') is metadata.
    try:
        found, _ = read_front_matter(content)
        check_readme(content, repo_type)
    except InvalidMetadata as err:
        return JSONResponse({"errors": [{"message": str(err)}], "warnings": []}, status_code=400)
    if not found:
        return JSONResponse({"errors": [], "warnings": [{"message": "Empty or missing yaml metadata"}]})
    return JSONResponse({"errors": [], "warnings": []})
