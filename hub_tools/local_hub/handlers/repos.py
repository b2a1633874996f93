"""Repos, refs and history: create, delete, settings, list, info; branches and tags; commits; whoami.

Repo ids are case-insensitive, as on the Hub: `team/M1` finds `team/m1`, answers carry the spelling the repo was
created with, and a second repo that differs only in case is refused (409), so that nothing collides when
`hub sync` mirrors to huggingface.co. Tags, `pipeline_tag` and `library_name` come from the card
(`metadata.card_tags`), and listings filter (`filter=`, `search=`, `author=`, `gated=`, `pipeline_tag=`) and sort
on them as the Hub's do.

Store work runs in the hub's thread pool (`hub.run`). Settings are strictly typed: `private` is a JSON boolean and
`visibility` is "public" or "private", nothing else (a `null`, `0` or `""` is refused, never read as public).
"""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.local_hub.wire import base_url, paginated, read_json
from hub_tools.repos import check_ref_name, check_repo_id, check_repo_type, repo_url

COMMITS_PAGE = 1000
LIST_PAGE = 1000
GATED = ("auto", "manual")
SORTS = {"lastModified", "createdAt", "downloads", "likes", "trendingScore", "id"}


async def whoami(hub, request: Request) -> Response:
    """The token's user, its organisations and the token's role: what `HfApi.whoami` and `hf auth whoami` show."""
    user = hub.require_user(request)
    orgs = [{"type": "org", "name": org, "fullname": org, "roleInOrg": user.role} for org in user.orgs]
    return JSONResponse(
        {
            "type": "user",
            "id": user.name,
            "name": user.name,
            "fullname": user.name,
            "orgs": orgs,
            "isPro": False,
            "auth": {
                "type": "access_token",
                "accessToken": {"displayName": f"local hub token of {user.name}", "role": user.role},
            },
        }
    )


def private_field(data: dict) -> bool | None:
    """`private` or `visibility` of a settings or create body, strictly typed (None when neither is given).

    A present `private` must be a JSON boolean (`null`, 0 or "" would otherwise read as public), `visibility`
    "public" or "private"; both given must agree.
    """
    private = None
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


# ---- repos ----
async def create_repo(hub, request: Request) -> Response:
    user = hub.require_user(request)
    data = await read_json(request, hub.limits.json_body)
    name, org = data.get("name"), data.get("organization")
    repo_type = check_repo_type(data.get("type") or "model")
    if not isinstance(name, str) or (org is not None and not isinstance(org, str)):
        raise bad_request("'name' (and 'organization', if given) must be strings")
    repo_id = check_repo_id(f"{org or user.name}/{name}")
    private = private_field(data)
    sdk = data.get("sdk")
    if sdk is not None and not isinstance(sdk, str):
        raise bad_request("'sdk' must be a string")
    hub.check_namespace(user, repo_id.split("/")[0], f"cannot create {repo_type} {repo_id}")
    base = base_url(request)

    def create() -> None:
        with hub.naming_lock:
            existing = hub.find_repo(repo_type, repo_id)
            if existing is not None:
                url = repo_url(base, existing.repo_id, repo_type)
                raise HubError(
                    409, f"You already created this {repo_type} repo: {existing.repo_id}", extra={"url": url}
                )
            hub.store.create_repo(repo_type, repo_id, private=bool(private), sdk=sdk, author=user.name)

    await hub.run(create)
    url = repo_url(base, repo_id, repo_type)
    return JSONResponse({"url": url, "name": repo_id, "id": repo_id})


async def delete_repo(hub, request: Request) -> Response:
    user = hub.require_user(request)
    data = await read_json(request, hub.limits.json_body)
    repo_type = check_repo_type(data.get("type") or "model")
    repo_id = f"{data.get('organization') or user.name}/{data.get('name')}"
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    await hub.run(hub.store.delete_repo, repo)
    if hub.spaces is not None and repo_type == "space":
        hub.spaces.stop(repo.repo_id)
    return JSONResponse({})


async def update_settings(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    """PUT .../settings: `private`/`visibility` and `gated` (false, "auto" or "manual"), as `update_repo_settings`."""
    repo, _ = hub.writable_repo(request, repo_type, repo_id)
    data = await read_json(request, hub.limits.json_body)
    private = private_field(data)
    if "gated" in data and data["gated"] is not False and data["gated"] not in GATED:
        raise bad_request('\'gated\' must be false, "auto" or "manual"')
    if private is not None:
        await hub.run(hub.store.set_private, repo, private)
    if "gated" in data:
        await hub.run(hub.store.update_meta, repo, {"gated": data["gated"] or None})
    return JSONResponse({"private": repo.private, "gated": repo.gated})


def main_head(hub, repo) -> tuple[str | None, dict | None]:
    """(main's head, its commit) of a repo; (None, None) for a repo without main."""
    sha = hub.store.refs(repo)["branches"].get("main")
    return sha, (hub.store.get_commit(repo, sha) if sha else None)


def repo_summary(hub, repo, sha: str | None, commit: dict | None) -> dict:
    """The fields a listing and an info share."""
    card = hub.cards.card(hub.store, repo, sha) if sha else None
    meta = (card.meta if card else None) or {}
    info = {
        "id": repo.repo_id,
        "_id": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": sha,
        "lastModified": commit["date"] if commit else repo.meta.get("createdAt"),
        "createdAt": repo.meta.get("createdAt"),
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "trendingScore": 0,
        "tags": card.tags if card else [],
    }
    if repo.repo_type == "model":
        info["modelId"] = repo.repo_id
        for key in ("pipeline_tag", "library_name"):
            if isinstance(meta.get(key), str):
                info[key] = meta[key]
    if repo.repo_type == "space":
        info["sdk"] = repo.meta.get("sdk") or meta.get("sdk")
        info.update(space_fields(hub, repo))
    return info


def space_fields(hub, repo) -> dict:
    """A Space's runtime, and its host when it runs (gradio_client.Client("NS/NAME") connects there)."""
    status = hub.spaces.status(repo.repo_id) if hub.spaces is not None else None
    if status is None:
        return {"runtime": {"stage": "NO_APP_FILE" if hub.spaces else "STOPPED", "hardware": _hardware()}}
    out = {"runtime": {"stage": status.stage, "hardware": _hardware(), "errorMessage": status.error}}
    if status.url:
        out["host"] = status.url
        out["subdomain"] = status.url.split("//", 1)[-1]
    return out


def _hardware() -> dict:
    return {"current": "cpu-basic", "requested": "cpu-basic"}


def _expand(request: Request, info: dict) -> dict:
    """Only the asked properties (and the id) when `expand` is given, as the Hub answers."""
    wanted = request.query_params.getlist("expand") or request.query_params.getlist("expand[]")
    if not wanted:
        return info
    return {key: value for key, value in info.items() if key in wanted or key in ("id", "_id")}


async def list_repos(hub, request: Request, repo_type: str) -> Response:
    """GET /api/models|datasets|spaces: `list_models` and friends, with the Hub's filters, sorting and limit."""
    user = hub.user(request)
    params = request.query_params
    filters = [f for value in params.getlist("filter") for f in value.split(",") if f]
    sort, direction = params.get("sort"), params.get("direction", "-1")
    if sort is not None and sort not in SORTS:
        raise bad_request(f"Invalid sort {sort!r}: one of {', '.join(sorted(SORTS))}")
    full = params.get("full", "").lower() in ("1", "true") or params.get("cardData", "").lower() in ("1", "true")
    return await hub.run(_listing, hub, request, repo_type, user, filters, full, sort, direction)


def _listing(hub, request: Request, repo_type: str, user, filters: list, full: bool, sort, direction: str) -> Response:
    """The listing's store work (every repo's main head and card), in the thread pool."""
    params = request.query_params
    author, search = params.get("author"), params.get("search")
    pipeline_tag, gated = params.get("pipeline_tag"), params.get("gated")
    items = []
    for repo in hub.store.list_repos(repo_type):
        if not hub.can_read(user, repo):
            continue
        if author and repo.repo_id.split("/")[0].lower() != author.lower():
            continue
        if search and search.lower() not in repo.repo_id.lower():
            continue
        if gated is not None and bool(repo.gated) != (gated.lower() == "true"):
            continue
        sha, commit = main_head(hub, repo)
        info = repo_summary(hub, repo, sha, commit)
        tags = {t.lower() for t in info["tags"]}
        if any(f.lower() not in tags for f in filters):
            continue
        if pipeline_tag and info.get("pipeline_tag") != pipeline_tag:
            continue
        if full and commit is not None:
            info["siblings"] = [{"rfilename": p} for p in sorted(commit["files"])]
            card = hub.cards.card(hub.store, repo, sha)
            if card.meta is not None:
                info["cardData"] = card.meta
        items.append(_expand(request, info))
    if sort is not None:
        # Git dates are whole seconds: among equal ones, the repo created later counts as the later one.
        items.sort(
            key=lambda i: (i.get(sort) is not None, i.get(sort) or 0, i.get("createdAt") or ""),
            reverse=direction != "1",
        )
    limit = params.get("limit")
    if limit is not None:
        if not limit.isdigit():
            raise bad_request("'limit' must be a positive integer")
        items = items[: int(limit)]
    return paginated(request, items, page_size=LIST_PAGE)


async def repo_info(hub, request: Request, repo_type: str, repo_id: str, revision: str = "main") -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)

    def info() -> Response:
        oid = hub.store.resolve(repo, revision)
        commit = hub.store.get_commit(repo, oid)
        siblings, used = [], 0
        for entry in hub.store.tree_view(repo, oid).file_entries():
            sibling = {"rfilename": entry.path, "size": entry.size, "blobId": entry.oid}
            if entry.lfs:
                sibling["lfs"] = {"size": entry.size, "sha256": entry.lfs.oid, "pointerSize": entry.lfs.pointer_size}
            siblings.append(sibling)
            used += entry.size
        out = repo_summary(hub, repo, oid, commit)
        out["siblings"] = siblings
        out["usedStorage"] = used
        card = hub.cards.card(hub.store, repo, oid)
        if card.meta is not None:
            out["cardData"] = card.meta
        return JSONResponse(_expand(request, out))

    return await hub.run(info)


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
    }
    if request.query_params.get("include_prs", "").lower() in ("1", "true"):
        out["pullRequests"] = [
            {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": c}
            for n, c in sorted((int(n), c) for n, c in refs["pulls"].items() if n.isdigit())
        ]
    else:
        out["pullRequests"] = []
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
