"""Repos, refs and history: create, delete, settings, list, info; branches and tags; commits; whoami.

Store calls run in the hub's thread pool (`hub.run`). Settings are strictly typed: `private` is a JSON boolean and
`visibility` is "public" or "private", nothing else (a `null`, `0` or `""` is refused, never read as public).
"""

import json
import threading
from collections import OrderedDict

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub.cards import InvalidMetadata, read_front_matter
from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.local_hub.wire import base_url, paginated, read_json
from hub_tools.repos import check_ref_name, check_repo_type, repo_url

COMMITS_PAGE = 1000
MAX_CARD_SIZE = 1024 * 1024  # a README larger than this gives no cardData
CARD_CACHE = 1024  # parsed front matters kept, by README blob id


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


def read_visibility(data: dict) -> bool | None:
    """True (private), False (public) or None (not said) from a body's `private` or `visibility`; else a 400."""
    private = visibility = None
    if "private" in data:
        private = data["private"]
        if not isinstance(private, bool):
            raise bad_request(f"'private' must be true or false, not {private!r}")
    if "visibility" in data:
        visibility = data["visibility"]
        if visibility not in ("public", "private"):
            raise bad_request(f'\'visibility\' must be "public" or "private", not {visibility!r}')
        if private is not None and private != (visibility == "private"):
            raise bad_request("'private' and 'visibility' disagree: send one of them")
        private = visibility == "private"
    return private


def _optional_text(data: dict, key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{key!r} must be a string, not {value!r}")
    return value


# ---- repos ----
async def create_repo(hub, request: Request) -> Response:
    user = hub.require_user(request)
    data = await read_json(request, hub.limits.json_body)
    name, org = data.get("name"), _optional_text(data, "organization")
    repo_type = check_repo_type(_optional_text(data, "type") or "model")
    if not isinstance(name, str):
        raise bad_request("'name' must be a string")
    private = read_visibility(data)
    sdk = _optional_text(data, "sdk")
    repo_id = f"{org or user}/{name}"
    url = repo_url(base_url(request), repo_id, repo_type)
    try:
        await hub.run(lambda: hub.store.create_repo(repo_type, repo_id, private=bool(private), sdk=sdk, author=user))
    except HubError as err:
        if err.status == 409:
            err.extra = {"url": url}
        raise
    return JSONResponse({"url": url, "name": repo_id, "id": repo_id})


async def delete_repo(hub, request: Request) -> Response:
    user = hub.require_user(request)
    data = await read_json(request, hub.limits.json_body)
    repo_type = check_repo_type(_optional_text(data, "type") or "model")
    repo_id = f"{_optional_text(data, 'organization') or user}/{_optional_text(data, 'name')}"
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    await hub.run(hub.store.delete_repo, repo)
    return JSONResponse({})


async def update_settings(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.limits.json_body)
    private = read_visibility(data)
    if private is not None:
        await hub.run(hub.store.set_private, repo, private)
    return JSONResponse({"private": repo.private})


async def list_repos(hub, request: Request, repo_type: str) -> Response:
    user = hub.user(request)
    params = request.query_params
    author, search = params.get("author"), params.get("search")

    def listing() -> Response:
        items = []
        for repo in hub.store.list_repos(repo_type):
            if repo.private and user is None:
                continue
            if author and repo.repo_id.split("/")[0] != author:
                continue
            if search and search.lower() not in repo.repo_id.lower():
                continue
            items.append(
                {
                    "id": repo.repo_id,
                    "_id": repo.repo_id,
                    "modelId": repo.repo_id,
                    "private": repo.private,
                    "sha": hub.store.refs(repo)["branches"].get("main"),
                    "createdAt": repo.meta.get("createdAt"),
                    "tags": [],
                    "downloads": 0,
                    "likes": 0,
                }
            )
        return JSONResponse(items)

    return await hub.run(listing)


async def repo_info(hub, request: Request, repo_type: str, repo_id: str, revision: str = "main") -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)

    def info() -> Response:
        store = hub.store
        oid = store.resolve(repo, revision)
        commit = store.commit_info(repo, oid)
        view = store.tree_view(repo, oid)
        siblings, used = [], 0
        for entry in view.file_entries():
            sibling = {"rfilename": entry.path, "size": entry.size, "blobId": entry.oid}
            if entry.lfs:
                sibling["lfs"] = {"size": entry.size, "sha256": entry.lfs.oid, "pointerSize": entry.lfs.pointer_size}
            siblings.append(sibling)
            used += entry.size
        out = {
            "id": repo.repo_id,
            "_id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": oid,
            "lastModified": commit.date,
            "createdAt": repo.meta.get("createdAt"),
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": used,
        }
        if repo_type == "model":
            out["modelId"] = repo.repo_id
        card = card_data(store, repo, view.file("README.md"))
        if card is not None:
            out["cardData"] = card
        if repo_type == "space":
            out["sdk"] = repo.meta.get("sdk") or (card or {}).get("sdk")
        return JSONResponse(out)

    return await hub.run(info)


_cards: OrderedDict = OrderedDict()
_cards_lock = threading.Lock()


def card_data(store, repo, readme) -> dict | None:
    """The README's front matter, when the README is small enough and valid; parsed once per README blob.

    The result is shared between requests: read it, never change it.
    """
    if readme is None or readme.lfs or readme.size > MAX_CARD_SIZE:
        return None
    with _cards_lock:
        if readme.oid in _cards:
            _cards.move_to_end(readme.oid)
            return _cards[readme.oid]
    text = store.read_blob(repo, readme.oid).decode("utf-8", "replace")
    try:
        card = read_front_matter(text)[1]
    except InvalidMetadata:
        card = None
    if card is not None:  # JSON-safe (YAML dates become strings), and never mutated once cached
        card = json.loads(json.dumps(card, default=str))
    with _cards_lock:
        _cards[readme.oid] = card
        while len(_cards) > CARD_CACHE:
            _cards.popitem(last=False)
    return card


# ---- refs: branches and tags ----
async def list_refs(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    refs = await hub.run(hub.store.refs, repo)
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
    data = await read_json(request, hub.limits.json_body, default={})
    return await _create_ref(hub, repo, "branches", revision, at=_text(data, "startingPoint", "main"))


async def create_tag(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    """POST .../tag/{revision} with {"tag": name}: tags the commit `revision` resolves to."""
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.limits.json_body)
    return await _create_ref(hub, repo, "tags", _text(data, "tag"), at=revision)


def _text(data: dict, key: str, default: str | None = None) -> str:
    value = data.get(key) or default
    if not isinstance(value, str):
        raise bad_request(f"{key!r} must be a string")
    return value


async def _create_ref(hub, repo, kind: str, name: str, *, at: str) -> Response:
    check_ref_name(name)
    await hub.run(lambda: hub.store.create_ref(repo, kind, name, hub.store.resolve(repo, at)))
    return JSONResponse({})


async def delete_branch(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    return await _delete_ref(hub, request, repo_type, repo_id, "branches", revision)


async def delete_tag(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    return await _delete_ref(hub, request, repo_type, repo_id, "tags", revision)


async def _delete_ref(hub, request: Request, repo_type: str, repo_id: str, kind: str, name: str) -> Response:
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    await hub.run(hub.store.delete_ref, repo, kind, name)
    return JSONResponse({})


# ---- history ----
async def list_commits(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    """The commits `revision` reaches, in `git log`'s order (a clone's `git log` lists the same)."""
    repo = hub.readable_repo(request, repo_type, repo_id)

    def listing() -> Response:
        commits = list(hub.store.walk(repo, hub.store.resolve(repo, revision)))
        return paginated(request, commits, page_size=COMMITS_PAGE, render=lambda info: info.to_json())

    return await hub.run(listing)
