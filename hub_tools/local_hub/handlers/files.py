"""Reading files: resolve (downloads, byte ranges), tree listings and paths-info.

A file's `oid` in a listing is its git blob id, as on the Hub: for an LFS file, the blob id of its pointer
(the sha256 is in `lfs.oid`); a folder's `oid` is its git tree id, so it changes when anything below it does.
Every store call runs in the hub's thread pool (`hub.run`), never on the event loop, and reads through the store's
caches (trees parsed once per id, a tree's flat listing built once): a listing or a paths-info costs what it
returns, whatever the repo's size.
"""

import json
import re
from urllib.parse import parse_qs, quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from hub_tools.local_hub.errors import HubError, bad_request, entry_not_found, error_response
from hub_tools.local_hub.gitplumbing import read_range
from hub_tools.local_hub.gittrees import DirEntry
from hub_tools.local_hub.storage import check_path
from hub_tools.local_hub.wire import paginated, parse_json, read_body

TREE_PAGE = 1000
MAX_PATHS_INFO = 50_000  # paths in one paths-info request (a request's work stays bounded)
LAST_COMMIT_WALK = 1000  # commits looked back for each listed path's last commit (`expand=true`)


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() in ("true", "1")


def read_folder(hub, request: Request, repo_type: str, repo_id: str, revision: str, path: str):
    """(repo, commit id, its TreeView, the folder path) of a folder to list; EntryNotFound when it is no folder.

    Does store work: call it in the thread pool (`hub.run`).
    """
    repo = hub.readable_repo(request, repo_type, repo_id)
    path = path.strip("/")
    if path:
        check_path(path)
    oid = hub.store.resolve(repo, revision)
    view = hub.store.tree_view(repo, oid)
    if path and not isinstance(view.entry(path), DirEntry):
        raise entry_not_found(path, revision)
    return repo, oid, view, path


def tree_entries(view, path: str, recursive: bool) -> list[dict]:
    """The files and folders below `path` of a TreeView (all levels when `recursive`), as the tree API lists them."""
    return [entry.to_json() for entry in view.list(path, recursive=recursive) or []]


def commit_summary(info) -> dict:
    """A commit as a listing's `lastCommit` (and the pages) read it."""
    return {"id": info.id, "title": info.title, "date": info.date, "message": info.message, "author": info.author}


def last_commits(store, repo, head: str, items: list[dict]) -> dict[str, dict]:
    """{path: the newest commit (first parents from `head`) that changed it} for tree items (files and folders).

    A path changed where its git id (blob or tree) differs from the parent's; a folder whose id did not change
    is not looked into. At most LAST_COMMIT_WALK commits back (older: the oldest commit walked stands in).
    """
    pending = {item["path"] for item in items}
    out: dict[str, dict] = {}
    info = store.commit_info(repo, head)
    ids = _ids_at(store.tree_view(repo, head), pending)
    for _ in range(LAST_COMMIT_WALK):
        parent = store.commit_info(repo, info.parents[0]) if info.parents else None
        before = _ids_at(store.tree_view(repo, parent.id), pending) if parent and parent.tree != info.tree else ids
        for path in [p for p in pending if parent is None or before[p] != ids[p]]:
            out[path] = commit_summary(info)
            pending.discard(path)
        if not pending or parent is None:
            break
        info, ids = parent, before
    out.update({path: commit_summary(info) for path in pending})
    return out


def _ids_at(view, paths) -> dict[str, str | None]:
    found = {}
    for path in paths:
        entry = view.entry(path)
        found[path] = entry.oid if entry is not None else None
    return found


def expand_items(store, repo, head: str, items: list[dict]) -> list[dict]:
    """`expand=true`: each item with its `lastCommit` ({id, title, date}), as `list_repo_tree(expand=True)` reads."""
    commits = last_commits(store, repo, head, items)
    for item in items:
        commit = commits[item["path"]]
        item["lastCommit"] = {"id": commit["id"], "title": commit["title"], "date": commit["date"]}
    return items


async def list_tree(hub, request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
    recursive, expand = _flag(request, "recursive"), _flag(request, "expand")

    def listing() -> Response:
        repo, oid, view, folder = read_folder(hub, request, repo_type, repo_id, revision, path)
        items = view.list(folder, recursive=recursive)
        if not expand:
            return paginated(request, items, page_size=TREE_PAGE, render=lambda item: item.to_json())
        page = paginated(request, items, page_size=TREE_PAGE, render=lambda item: item.to_json())
        rendered = expand_items(hub.store, repo, oid, json.loads(page.body))  # only the page's items are expanded
        return JSONResponse(rendered, headers={k: v for k, v in page.headers.items() if k.lower() == "link"})

    return await hub.run(listing)


def _expand_asked(body: bytes, content_type: str) -> bool:
    if content_type.startswith("application/json"):
        data = parse_json(body)
        return isinstance(data, dict) and data.get("expand") in (True, "true", "1")
    return parse_qs(body.decode("utf-8", "replace")).get("expand", ["false"])[0].lower() in ("true", "1")


def read_paths(body: bytes, content_type: str) -> list[str]:
    """The `paths` of a paths-info body (JSON or form-encoded), checked: at most MAX_PATHS_INFO valid paths."""
    if content_type.startswith("application/json"):
        data = parse_json(body)
        paths = data.get("paths", []) if isinstance(data, dict) else None
    else:
        paths = parse_qs(body.decode("utf-8", "replace")).get("paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise bad_request("'paths' must be a list of strings")
    if len(paths) > MAX_PATHS_INFO:
        raise bad_request(f"Too many paths ({len(paths)}): at most {MAX_PATHS_INFO} per request, send them in batches")
    out = []
    for path in paths:
        path = path.strip("/")
        if path:
            out.append(check_path(path))
    return out


async def paths_info(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    body = await read_body(request, hub.limits.paths_info_body)
    content_type = request.headers.get("content-type", "")

    def lookup() -> Response:
        paths = read_paths(body, content_type)
        head = hub.store.resolve(repo, revision)
        items = [entry.to_json() for entry in hub.store.tree_view(repo, head).paths_info(paths)]
        if _expand_asked(body, content_type):
            items = expand_items(hub.store, repo, head, items)
        return JSONResponse(items)

    return await hub.run(lookup)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | Response | None:
    """(start, end) of a `Range: bytes=` header; None without one; a 416 response when it cannot be served."""
    if not header:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or (not match.group(1) and not match.group(2)):
        raise HubError(416, f"Invalid range {header!r}")
    if match.group(1):
        start = int(match.group(1))
        end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
    else:  # suffix range: the last N bytes
        start, end = max(0, size - int(match.group(2))), size - 1
    if start >= size or start > end:
        err = error_response(HubError(416, f"Range {header} not satisfiable for {size} bytes"))
        err.headers["Content-Range"] = f"bytes */{size}"
        return err
    return start, end


async def resolve_file(hub, request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
    """GET/HEAD /{prefix}{id}/resolve/{revision}/{path}: the file, whole or a byte range, with the Hub's headers."""
    repo = hub.readable_repo(request, repo_type, repo_id)
    check_gate(hub, request, repo)
    check_path(path)

    def lookup():
        oid = hub.store.resolve(repo, revision)
        entry = hub.store.tree_view(repo, oid).file(path)
        if entry is None:
            # With X-Repo-Commit the client caches the miss (no second request for a file that is not there).
            raise entry_not_found(path, revision, commit=oid)
        if entry.lfs and not hub.store.has_lfs_object(entry.lfs.oid, entry.size):
            raise HubError(500, f"The local hub's storage is damaged: the LFS object of {path} is missing or "
                           "truncated; run `babyhub hub fsck`")  # fmt: skip
        return oid, entry

    oid, entry = await hub.run(lookup)
    size = entry.size
    headers = {
        "X-Repo-Commit": oid,
        "ETag": f'"{entry.etag}"',
        "X-Linked-Etag": f'"{entry.etag}"',
        "X-Linked-Size": str(size),
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.split('/')[-1])}",
    }
    status, start, end = 200, 0, size - 1
    byte_range = _byte_range(request.headers.get("range"), size)
    if isinstance(byte_range, Response):
        return byte_range
    if byte_range is not None:
        (start, end), status = byte_range, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1 if size else 0
    headers["Content-Length"] = str(length)
    media_type = "application/octet-stream" if entry.lfs else "text/plain; charset=utf-8"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=media_type)
    if entry.lfs:  # streamed from the pool by the thread pool, 1 MiB at a time: memory stays flat
        chunks = read_range(hub.store.lfs_path(entry.lfs.oid), start, length)
        return StreamingResponse(chunks, status_code=status, headers=headers, media_type=media_type)
    data = await hub.run(lambda: b"".join(hub.store.read_file(repo, entry, start, length)))
    return Response(data, status_code=status, headers=headers, media_type=media_type)


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
