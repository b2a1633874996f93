"""Repos, refs and history: create, delete, settings, list, info; branches and tags; commits; whoami."""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub.cards import InvalidMetadata, read_front_matter
from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.local_hub.handlers.files import lfs_pointer_size, tree_oid
from hub_tools.local_hub.storage import check_ref_name
from hub_tools.local_hub.wire import base_url, paginated, read_json
from hub_tools.repos import check_repo_type, repo_url

COMMITS_PAGE = 1000
MAX_CARD_SIZE = 1024 * 1024  # a README larger than this gives no cardData


async def whoami(hub, request: Request) -> Response:
    user = hub.require_user(request)
    return JSONResponse(
        {
            "type": "user",
            "name": user,
            "fullname": user,
            "orgs": [],
            "isPro": False,
            "auth": {"type": "access_token", "accessToken": {"displayName": "local hub token", "role": "write"}},
        }
    )


# ---- repos ----
async def create_repo(hub, request: Request) -> Response:
    user = hub.require_user(request)
    data = await read_json(request, hub.max_api_body)
    name, org = data.get("name"), data.get("organization")
    repo_type = check_repo_type(data.get("type") or "model")
    if not isinstance(name, str) or (org is not None and not isinstance(org, str)):
        raise bad_request("'name' (and 'organization', if given) must be strings")
    repo_id = f"{org or user}/{name}"
    private = data.get("private")
    if data.get("visibility") is not None:
        private = data["visibility"] != "public"
    url = repo_url(base_url(request), repo_id, repo_type)
    try:
        hub.store.create_repo(repo_type, repo_id, private=bool(private), sdk=data.get("sdk"), author=user)
    except HubError as err:
        if err.status == 409:
            err.extra = {"url": url}
        raise
    return JSONResponse({"url": url, "name": repo_id, "id": repo_id})


async def delete_repo(hub, request: Request) -> Response:
    user = hub.require_user(request)
    data = await read_json(request, hub.max_api_body)
    repo_type = data.get("type") or "model"
    repo_id = f"{data.get('organization') or user}/{data.get('name')}"
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    hub.store.delete_repo(repo)
    return JSONResponse({})


async def update_settings(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.max_api_body)
    if "private" in data or "visibility" in data:
        private = data.get("private") if "private" in data else data["visibility"] != "public"
        hub.store.set_private(repo, bool(private))
    return JSONResponse({"private": repo.private})


async def list_repos(hub, request: Request, repo_type: str) -> Response:
    user = hub.user(request)
    params = request.query_params
    author, search = params.get("author"), params.get("search")
    items = []
    for repo in hub.store.list_repos(repo_type):
        if repo.private and user is None:
            continue
        if author and repo.repo_id.split("/")[0] != author:
            continue
        if search and search.lower() not in repo.repo_id.lower():
            continue
        sha = hub.store.refs(repo)["branches"].get("main")
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


async def repo_info(hub, request: Request, repo_type: str, repo_id: str, revision: str = "main") -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    oid = hub.store.resolve(repo, revision)
    commit = hub.store.get_commit(repo, oid)
    siblings = []
    for path, entry in sorted(commit["files"].items()):
        sibling = {"rfilename": path, "size": entry["size"], "blobId": tree_oid(entry)}
        if entry["lfs"]:
            sibling["lfs"] = {"size": entry["size"], "sha256": entry["sha256"], "pointerSize": lfs_pointer_size(entry)}
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
    card = _card_data(hub.store, commit)
    if card is not None:
        info["cardData"] = card
    if repo_type == "space":
        info["sdk"] = repo.meta.get("sdk") or (card or {}).get("sdk")
    return JSONResponse(info)


def _card_data(store, commit: dict) -> dict | None:
    """The README's front matter, when the commit has a README that is small enough and valid."""
    entry = commit["files"].get("README.md")
    if entry is None or entry["size"] > MAX_CARD_SIZE:
        return None
    text = store.blob_path(entry["sha256"]).read_text(errors="replace")
    try:
        return read_front_matter(text)[1]
    except InvalidMetadata:
        return None


# ---- refs: branches and tags ----
async def list_refs(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    refs = hub.store.refs(repo)
    out = {
        "branches": [
            {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in sorted(refs["branches"].items())
        ],
        "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in sorted(refs["tags"].items())],
        "converts": [],
        "pullRequests": [],
    }
    return JSONResponse(out)


async def create_branch(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    """POST .../branch/{name} with {"startingPoint": revision} (default main): the route's revision is the name."""
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.max_api_body, default={})
    return _create_ref(hub.store, repo, "branches", revision, at=_text(data, "startingPoint", "main"))


async def create_tag(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    """POST .../tag/{revision} with {"tag": name}: tags the commit `revision` resolves to."""
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.max_api_body)
    return _create_ref(hub.store, repo, "tags", _text(data, "tag"), at=revision)


def _text(data: dict, key: str, default: str | None = None) -> str:
    value = data.get(key) or default
    if not isinstance(value, str):
        raise bad_request(f"{key!r} must be a string")
    return value


def _create_ref(store, repo, kind: str, name: str, *, at: str) -> Response:
    check_ref_name(name)
    store.create_ref(repo, kind, name, store.resolve(repo, at))
    return JSONResponse({})


async def delete_branch(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    return _delete_ref(hub, request, repo_type, repo_id, "branches", revision)


async def delete_tag(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    return _delete_ref(hub, request, repo_type, repo_id, "tags", revision)


def _delete_ref(hub, request: Request, repo_type: str, repo_id: str, kind: str, name: str) -> Response:
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    hub.store.delete_ref(repo, kind, name)
    return JSONResponse({})


# ---- history ----
async def list_commits(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    oid = hub.store.resolve(repo, revision)
    items = [
        {
            "id": c["id"],
            "authors": [{"user": c["author"]}],
            "date": c["date"],
            "title": c["title"],
            "message": c["message"],
            "parents": c["parents"],
        }
        for c in hub.store.history(repo, oid)
    ]
    return paginated(request, items, page_size=COMMITS_PAGE)
