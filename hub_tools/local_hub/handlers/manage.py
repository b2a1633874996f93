"""Repo management: move (rename or transfer), duplicate, super-squash; a user's repos (`hf repos ls`); the Xet
token endpoints that name the fix; a Space's runtime.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub import xet
from hub_tools.local_hub.errors import HubError, bad_request, repo_not_found
from hub_tools.local_hub.handlers.repos import main_head, private_field, space_fields
from hub_tools.local_hub.wire import base_url, paginated, read_json
from hub_tools.repos import check_repo_id, check_repo_type, repo_url


async def move_repo(hub, request: Request) -> Response:
    """POST /api/repos/move {fromRepo, toRepo, type}: rename or transfer a repo, with its history and discussions."""
    user = hub.require_user(request)
    data = await read_json(request, hub.limits.json_body)
    source, dest = data.get("fromRepo"), data.get("toRepo")
    repo_type = check_repo_type(data.get("type") or "model")
    if not isinstance(source, str) or not isinstance(dest, str):
        raise bad_request("'fromRepo' and 'toRepo' must be repo ids (NAMESPACE/NAME)")
    check_repo_id(dest)
    repo, _ = hub.writable_repo(request, repo_type, source)
    hub.check_namespace(user, dest.split("/")[0], f"cannot move {repo.repo_id} to {dest}")
    with hub.naming_lock:
        existing = hub.find_repo(repo_type, dest)
        if existing is not None and existing.dir != repo.dir:
            raise HubError(409, f"Cannot move {repo.repo_id} to {dest}: a {repo_type} repo {existing.repo_id} exists")
        moved = hub.store.move_repo(repo, dest)
    if hub.spaces is not None and repo_type == "space":
        hub.spaces.stop(repo.repo_id)
        hub.spaces.changed(moved)
    return JSONResponse({"url": repo_url(base_url(request), moved.repo_id, repo_type)})


async def duplicate_repo(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    """POST .../duplicate {repository, visibility?}: a new repo holding the source's main files in one commit."""
    user = hub.require_user(request)
    source = hub.readable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.limits.json_body)
    dest = data.get("repository")
    if not isinstance(dest, str):
        raise bad_request("'repository' must be the new repo's id (NAMESPACE/NAME)")
    check_repo_id(dest)
    private = private_field(data)
    hub.check_namespace(user, dest.split("/")[0], f"cannot duplicate {source.repo_id} to {dest}")
    store = hub.store
    files = store.get_commit(source, store.resolve(source, "main"))["files"]
    # Small files are read and stored again (a store may keep them per repo); LFS objects are shared by hash.
    operations = [
        (
            "add",
            path,
            dict(entry) if entry["lfs"] else {"content": store.read_bytes(source, entry)},
        )
        for path, entry in sorted(files.items())
    ]
    with hub.naming_lock:
        existing = hub.find_repo(repo_type, dest)
        if existing is not None:
            url = repo_url(base_url(request), existing.repo_id, repo_type)
            raise HubError(409, f"You already created this {repo_type} repo: {existing.repo_id}", extra={"url": url})
        new = store.create_repo(
            repo_type,
            dest,
            private=source.private if private is None else private,
            sdk=source.meta.get("sdk"),
            author=user.name,
        )
    store.commit(new, "main", operations, title=f"Duplicate from {source.repo_id}", message="", author=user.name)
    if hub.spaces is not None and repo_type == "space":
        hub.spaces.changed(new)
    return JSONResponse({"url": repo_url(base_url(request), dest, repo_type), "filesCopyPending": False})


async def super_squash(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    """POST .../super-squash/{branch} {message}: the branch's history becomes one commit with its current files."""
    repo, user = hub.writable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.limits.json_body, default={})
    message = data.get("message") or f"Super-squash branch '{revision}'"
    if not isinstance(message, str):
        raise bad_request("'message' must be a string")
    branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
    oid = hub.store.squash(repo, branch, title=message, message="", author=user.name)
    return JSONResponse({"commitId": oid})


async def list_user_repos(hub, request: Request, org: str | None = None) -> Response:
    """GET /api/settings/repositories (yours) and /api/organizations/ORG/settings/repositories: `hf repos ls`."""
    user = hub.require_user(request)
    namespace = org or user.name
    if not user.member_of(namespace):
        raise HubError(403, f"{user.name} is not a member of {namespace}: only its members list its repos")
    items = []
    for repo_type in ("model", "dataset", "space"):
        for repo in hub.store.list_repos(repo_type):
            if repo.repo_id.split("/")[0].lower() != namespace.lower():
                continue
            _, commit = main_head(hub, repo)
            size = sum(e["size"] for e in commit["files"].values()) if commit else 0
            items.append(
                {
                    "id": repo.repo_id,
                    "type": repo_type,
                    "updatedAt": commit["date"] if commit else repo.meta.get("createdAt"),
                    "visibility": "private" if repo.private else "public",
                    "storage": size,
                }
            )
    total = sum(i["storage"] for i in items) or 1
    for item in items:
        item["storagePercent"] = 100.0 * item["storage"] / total
    items.sort(key=lambda i: i["updatedAt"] or "", reverse=True)
    return paginated(request, items, page_size=1000)


async def xet_token(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    """GET .../xet-write-token|xet-read-token/{rev}: no Xet here; a 400 whose message names HF_HUB_DISABLE_XET=1."""
    xet.note_attempt(request.url.path)
    raise HubError(400, xet.MESSAGE, "XetDisabled")


async def space_runtime(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    """GET /api/spaces/NS/NAME/runtime: the stage of a Space (RUNNING when `--run-spaces` runs it)."""
    if repo_type != "space":
        raise repo_not_found(repo_type, repo_id)
    repo = hub.readable_repo(request, repo_type, repo_id)
    return JSONResponse(space_fields(hub, repo)["runtime"])
