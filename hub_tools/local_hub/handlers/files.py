"""Reading files: resolve (downloads, byte ranges), tree listings and paths-info.

A file's `oid` in a listing is its git blob id, as on the Hub: for an LFS file, the blob id of its pointer
(the sha256 is in `lfs.oid`); a folder's oid hashes its listing, so it changes when anything below it does.
"""

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from hub_tools.local_hub.errors import HubError, bad_request, entry_not_found, error_response
from hub_tools.local_hub.storage import check_path, lfs_pointer
from hub_tools.local_hub.wire import paginated, read_body
from hub_tools.repos import git_blob_sha1

TREE_PAGE = 1000
LAST_COMMIT_WALK = 1000  # commits looked back for each listed path's last commit (`expand=true`)


def tree_oid(entry: dict) -> str:
    """The git blob id a listing shows for a file entry: of its content, or of its LFS pointer."""
    if entry["lfs"]:
        return git_blob_sha1(lfs_pointer(entry["sha256"], entry["size"]))
    return entry["sha1"]


def lfs_pointer_size(entry: dict) -> int:
    return len(lfs_pointer(entry["sha256"], entry["size"]))


def file_item(path: str, entry: dict) -> dict:
    item = {"type": "file", "path": path, "size": entry["size"], "oid": tree_oid(entry)}
    if entry["lfs"]:
        item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": lfs_pointer_size(entry)}
    return item


def dir_item(path: str, files: dict) -> dict:
    listing = "\n".join(f"{p}:{files[p]['sha256']}" for p in sorted(files) if p.startswith(path + "/"))
    return {"type": "directory", "path": path, "oid": hashlib.sha1(listing.encode()).hexdigest(), "size": 0}


def tree_entries(files: dict, path: str, recursive: bool) -> list[dict]:
    """The files and folders below `path` (all levels when `recursive`), sorted by path."""
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
            files_out.append(file_item(p, files[p]))
    items = [dir_item(d, files) for d in sorted(dirs)] + files_out
    return sorted(items, key=lambda item: item["path"])


def _under(files, path: str) -> dict:
    prefix = path + "/"
    return {p: e["sha256"] for p, e in files.items() if p.startswith(prefix)}


def _differs(new_files, old_files, path: str, is_dir: bool) -> bool:
    if is_dir:
        return _under(new_files, path) != _under(old_files, path)
    new, old = new_files.get(path), old_files.get(path)
    return (new or {}).get("sha256") != (old or {}).get("sha256")


def last_commits(store, repo, head: str, items: list[dict]) -> dict[str, dict]:
    """{path: the newest commit (first parents from `head`) that changed it} for tree items (files and folders)."""
    pending = {item["path"]: item["type"] == "directory" for item in items}
    out: dict[str, dict] = {}
    commit = store.get_commit(repo, head)
    for _ in range(LAST_COMMIT_WALK):
        parent = store.get_commit(repo, commit["parents"][0]) if commit["parents"] else None
        for path, is_dir in list(pending.items()):
            if parent is None or _differs(commit["files"], parent["files"], path, is_dir):
                out[path] = commit
                del pending[path]
        if not pending or parent is None:
            break
        commit = parent
    out.update({path: commit for path in pending})  # older than the walk: its oldest commit stands in
    return out


def expand_items(store, repo, head: str, items: list[dict]) -> list[dict]:
    """`expand=true`: each item with its `lastCommit` ({id, title, date}), as `list_repo_tree(expand=True)` reads."""
    commits = last_commits(store, repo, head, items)
    for item in items:
        commit = commits[item["path"]]
        item["lastCommit"] = {"id": commit["id"], "title": commit["title"], "date": commit["date"]}
    return items


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("true", "1")


def read_folder(hub, request: Request, repo_type: str, repo_id: str, revision: str, path: str):
    """(repo, commit, its files, the folder path) of a folder to list; EntryNotFound when no file is below it."""
    repo = hub.readable_repo(request, repo_type, repo_id)
    oid = hub.store.resolve(repo, revision)
    files = hub.store.get_commit(repo, oid)["files"]
    path = path.strip("/")
    if path:
        check_path(path)
        if not any(p.startswith(path + "/") for p in files):
            raise entry_not_found(path, revision)
    return repo, oid, files, path


async def list_tree(hub, request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
    repo, oid, files, path = read_folder(hub, request, repo_type, repo_id, revision, path)
    items = tree_entries(files, path, _flag(request, "recursive"))
    if _flag(request, "expand"):
        items = expand_items(hub.store, repo, oid, items)
    return paginated(request, items, page_size=TREE_PAGE)


async def paths_info(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    body = await read_body(request, hub.max_api_body)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            paths = json.loads(body).get("paths", [])
        except (ValueError, AttributeError):
            raise bad_request("Malformed JSON body") from None
    else:
        paths = parse_qs(body.decode("utf-8", "replace")).get("paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise bad_request("'paths' must be a list of strings")
    head = hub.store.resolve(repo, revision)
    files = hub.store.get_commit(repo, head)["files"]
    out = []
    for path in paths:
        path = path.strip("/")
        if not path:
            continue
        check_path(path)
        if path in files:
            out.append(file_item(path, files[path]))
        elif any(p.startswith(path + "/") for p in files):
            out.append(dir_item(path, files))
    form = parse_qs(body.decode("utf-8", "replace")) if b"expand" in body else {}
    if form.get("expand", ["false"])[0].lower() in ("true", "1"):
        out = expand_items(hub.store, repo, head, out)
    return JSONResponse(out)


async def resolve_file(hub, request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
    """GET/HEAD /{prefix}{id}/resolve/{revision}/{path}: the file, whole or a byte range, with the Hub's headers."""
    repo = hub.readable_repo(request, repo_type, repo_id)
    check_gate(hub, request, repo)
    oid = hub.store.resolve(repo, revision)
    check_path(path)
    entry = hub.store.get_commit(repo, oid)["files"].get(path)
    if entry is None:
        # With X-Repo-Commit the client caches the miss (no second request for a file that is not there).
        raise entry_not_found(path, revision, commit=oid)
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
    blob = hub.store.blob_path(entry["sha256"])
    return StreamingResponse(
        _read_range(blob, start, length), status_code=status, headers=headers, media_type=media_type
    )


def check_gate(hub, request: Request, repo) -> None:
    """A gated repo's files: "auto" to any signed-in user, "manual" to its namespace's members (else GatedRepo)."""
    if not repo.gated:
        return
    user = hub.user(request)
    what = f"{repo.repo_type} {repo.repo_id}"
    if user is None:
        raise HubError(
            401,
            f"Access to {what} is restricted (gated). You must be authenticated to access it: set HF_TOKEN",
            "GatedRepo",
        )
    if repo.gated == "manual" and not user.member_of(repo.repo_id.split("/")[0]):
        raise HubError(
            403,
            f"Access to {what} is restricted (gated: manual) and {user.name} is not in the authorized list: ask its "
            "owners for access",
            "GatedRepo",
        )


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
