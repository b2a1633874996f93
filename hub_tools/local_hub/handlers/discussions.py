"""Discussions and pull requests: listing, details, comments, title and status changes, and merging.

The endpoints `HfApi.get_repo_discussions`, `get_discussion_details`, `create_discussion`/`create_pull_request`,
`comment_discussion`, `rename_discussion`, `change_discussion_status`, `merge_pull_request`,
`edit_discussion_comment` and `hide_discussion_comment` call; commits with `create_pr=1` open pull requests
through `open_pull_request` (from `uploads.commit`).

Who may do what, as on the Hub: anyone who can read the repo may read its discussions; anyone with a write token
may open one, or a pull request, and comment; its author or a member of the repo's namespace may rename it, close
or reopen it, and push to a pull request's `refs/pr/N`; only a member of the namespace merges. A merge is a merge
commit on the target branch (first parent the branch, second the pull request's head), refused with a 409 that
names the files when the branch changed them too.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub_tools.local_hub import diffs
from hub_tools.local_hub.discussions import comment_event, commit_event, status_event, title_event
from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.local_hub.handlers.files import check_gate
from hub_tools.local_hub.rendering import render_markdown
from hub_tools.local_hub.wire import read_json
from hub_tools.repos import check_ref_name

PAGE = 50
MAX_TITLE = 200
MAX_COMMENT = 64 * 1024
TYPES = {"all": None, "discussion": False, "pull_request": True}


def parse_num(num: str) -> int:
    if not num.isdigit() or int(num) <= 0 or len(num) > 9:
        raise bad_request(f"Invalid discussion number {num!r}: a positive integer")
    return int(num)


def _text_field(data: dict, key: str, limit: int, *, required: bool = True) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise bad_request(f"{key!r} must be a non-empty string")
    if len(value) > limit:
        raise bad_request(f"{key!r} is too long ({len(value)} characters, at most {limit})")
    return value.strip()


def event_json(event: dict) -> dict:
    """An event as the client reads it: a comment's HTML rendered from its text (hidden comments stay empty)."""
    if event["type"] == "comment" and not event["data"]["hidden"]:
        latest = event["data"]["latest"]
        event = {**event, "data": {**event["data"], "latest": {**latest, "html": str(render_markdown(latest["raw"]))}}}
    return event


def summary_json(repo, record: dict) -> dict:
    """A record as a listing shows it."""
    return {
        "num": record["num"],
        "title": record["title"],
        "status": record["status"],
        "createdAt": record["createdAt"],
        "author": {"name": record["author"], "type": "user"},
        "isPullRequest": record["isPullRequest"],
        "repo": {"name": repo.repo_id, "type": repo.repo_type},
        "numComments": sum(e["type"] == "comment" for e in record["events"]),
        "pinned": False,
        "topReactions": [],
    }


def may_download(hub, request: Request, repo) -> bool:
    """Whether the request may see file contents (a gated repo's diffs are shown only to those who may download)."""
    try:
        check_gate(hub, request, repo)
    except HubError:
        return False
    return True


def pr_state(hub, repo, record: dict, *, with_diffs: bool = True) -> tuple[list[diffs.FileChange], list[str]]:
    """A pull request's changes (from where it started to its head) and the files that conflict with its target."""
    store = hub.store
    head = store.resolve(repo, f"refs/pr/{record['num']}")
    base_files = store.get_commit(repo, record["baseCommit"])["files"]
    head_files = store.get_commit(repo, head)["files"]
    conflicts: list[str] = []
    if record["status"] in ("open", "draft"):
        target = store.resolve(repo, record["changes"]["base"])
        _, conflicts = diffs.three_way(base_files, store.get_commit(repo, target)["files"], head_files)
    return diffs.changes(store, repo, base_files, head_files, with_diffs=with_diffs), conflicts


def details_json(hub, repo, record: dict, *, with_diffs: bool = True) -> dict:
    out = {**summary_json(repo, record), "events": [event_json(e) for e in record["events"]]}
    out["changes"] = dict(record.get("changes") or {})
    if record["isPullRequest"]:
        changes, conflicts = pr_state(hub, repo, record, with_diffs=with_diffs)
        out["filesWithConflicts"] = conflicts
        out["diff"] = diffs.git_diff(changes)
    return out


def _may_moderate(user, repo, record: dict) -> bool:
    """The author of a discussion, or a member of the repo's namespace with a write token."""
    return user.role == "write" and (user.name == record["author"] or user.can_write(repo.repo_id.split("/")[0]))


# ---- endpoints ----
async def discussions(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    """GET: the discussions, newest first, paged (`?p=`), filtered by type, status and author; POST: open one."""
    if request.method == "POST":
        return await _create(hub, request, repo_type, repo_id)
    repo = hub.readable_repo(request, repo_type, repo_id)
    params = request.query_params
    kind, status, author = params.get("type", "all"), params.get("status", "all"), params.get("author")
    if kind not in TYPES or status not in ("all", "open", "closed"):
        raise bad_request("type must be all, discussion or pull_request; status all, open or closed")
    try:
        page = max(0, int(params.get("p", "0")))
    except ValueError:
        raise bad_request("Invalid page number 'p'") from None
    records = [
        r
        for r in reversed(hub.discussions.list(repo))
        if (TYPES[kind] is None or r["isPullRequest"] == TYPES[kind])
        and (status == "all" or (r["status"] in ("open", "draft")) == (status == "open"))
        and (author is None or r["author"].lower() == author.lower())
    ]
    start = page * PAGE
    return JSONResponse(
        {
            "discussions": [summary_json(repo, r) for r in records[start : start + PAGE]],
            "count": len(records),
            "start": start,
            "numClosedDiscussions": sum(r["status"] not in ("open", "draft") for r in records),
        }
    )


async def _create(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    repo, user = hub.writable_repo(request, repo_type, repo_id, propose=True)
    data = await read_json(request, hub.limits.json_body)
    title = _text_field(data, "title", MAX_TITLE)
    description = _text_field(data, "description", MAX_COMMENT, required=False)
    pull_request = data.get("pullRequest", False)
    if not isinstance(pull_request, bool):
        raise bad_request("'pullRequest' must be true or false")
    if pull_request:
        record = open_pull_request(hub, repo, user, "main", title, description)
    else:
        record = hub.discussions.create(
            repo, title=title, author=user.name, description=description, pull_request=False
        )
    return JSONResponse(details_json(hub, repo, record, with_diffs=may_download(hub, request, repo)))


def open_pull_request(hub, repo, user, target: str, title: str, description: str) -> dict:
    """A new pull request on branch `target`: its record, and `refs/pr/N` at the branch's head."""
    check_ref_name(target)
    refs = hub.store.refs(repo)
    if target not in refs["branches"]:
        raise HubError(404, f"Invalid rev id: {target} is not a branch of {repo.repo_id}", "RevisionNotFound")
    head = refs["branches"][target]
    with hub.discussions.lock:
        record = hub.discussions.create(
            repo,
            title=title,
            author=user.name,
            description=description,
            pull_request=True,
            taken=set(hub.store.pr_refs(repo)),
            target=target,
            base_commit=head,
        )
        hub.store.create_pr_ref(repo, record["num"], head)
    return record


def pull_request_for_push(hub, request: Request, repo_type: str, repo_id: str, num: int):
    """(repo, user, record) when the request may commit to `refs/pr/{num}`: its author or a namespace member."""
    repo, user = hub.writable_repo(request, repo_type, repo_id, propose=True)
    record = hub.discussions.get(repo, num)
    if not record["isPullRequest"]:
        raise HubError(404, f"#{num} of {repo.repo_id} is a discussion, not a pull request", "RevisionNotFound")
    if not _may_moderate(user, repo, record):
        raise HubError(403, f"refs/pr/{num} of {repo.repo_id}: only its author {record['author']} and members of "
                       f"{repo.repo_id.split('/')[0]} may push to it; open your own pull request")  # fmt: skip
    if record["status"] not in ("open", "draft"):
        raise bad_request(f"Pull request #{num} of {repo.repo_id} is {record['status']}: reopen it to push to it")
    return repo, user, record


def record_commit(hub, repo, num: int, user, title: str, oid: str) -> None:
    hub.discussions.append(repo, num, commit_event(user.name, title, oid))


async def discussion_details(hub, request: Request, repo_type: str, repo_id: str, num: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    record = hub.discussions.get(repo, parse_num(num))
    return JSONResponse(details_json(hub, repo, record, with_diffs=may_download(hub, request, repo)))


async def change_discussion(hub, request: Request, repo_type: str, repo_id: str, num: str, action: str) -> Response:
    """POST .../discussions/N/{comment,title,status,merge}."""
    if action not in ("comment", "title", "status", "merge"):
        raise HubError(404, f"Not found: discussions/{num}/{action}")
    number = parse_num(num)
    repo, user = hub.writable_repo(request, repo_type, repo_id, propose=action != "merge")
    data = await read_json(request, hub.limits.json_body, default={})
    record = hub.discussions.get(repo, number)
    if action == "comment":
        event = comment_event(user.name, _text_field(data, "comment", MAX_COMMENT))
        return JSONResponse({"newMessage": event_json(hub.discussions.append(repo, number, event))})
    if action == "merge":
        return _merge(hub, repo, user, record, _text_field(data, "comment", MAX_COMMENT, required=False))
    if not _may_moderate(user, repo, record):
        raise HubError(
            403,
            f"#{number} of {repo.repo_id}: only its author and members of {repo.repo_id.split('/')[0]} may change it",
        )
    if action == "title":
        title = _text_field(data, "title", MAX_TITLE)
        event = title_event(user.name, record["title"], title)
        return JSONResponse({"newTitle": hub.discussions.append(repo, number, event, title=title)})
    status = data.get("status")
    if status not in ("open", "closed"):
        raise bad_request("'status' must be open or closed")
    if record["status"] == "merged":
        raise bad_request(f"Pull request #{number} of {repo.repo_id} is merged: its status cannot change")
    comment = _text_field(data, "comment", MAX_COMMENT, required=False)
    if comment:
        hub.discussions.append(repo, number, comment_event(user.name, comment))
    event = hub.discussions.append(repo, number, status_event(user.name, status), status=status)
    return JSONResponse({"newStatus": event})


def _merge(hub, repo, user, record: dict, comment: str) -> Response:
    num = record["num"]
    if not record["isPullRequest"]:
        raise bad_request(f"#{num} of {repo.repo_id} is a discussion: only pull requests merge")
    if record["status"] not in ("open", "draft"):
        raise bad_request(f"Pull request #{num} of {repo.repo_id} is {record['status']}: only an open one merges")
    store = hub.store
    target = record["changes"]["base"]
    branch = target[len("refs/heads/") :]
    with hub.discussions.lock:
        target_head = store.resolve(repo, target)
        pr_head = store.resolve(repo, f"refs/pr/{num}")
        operations, conflicts = diffs.three_way(
            store.get_commit(repo, record["baseCommit"])["files"],
            store.get_commit(repo, target_head)["files"],
            store.get_commit(repo, pr_head)["files"],
        )
        if conflicts:
            raise HubError(
                409,
                f"Pull request #{num} of {repo.repo_id} cannot be merged: {', '.join(conflicts)} changed on {branch} "
                "too since it was opened; update those files in the pull request (or close it and open another)",
                extra={"filesWithConflicts": conflicts},
            )
        oid = store.commit(
            repo,
            branch,
            operations,
            title=f"{record['title']} (#{num})",
            message=f"Merge refs/pr/{num} into {branch}",
            author=user.name,
            parent_commit=target_head,
            extra_parents=[pr_head],
        )
        if comment:
            hub.discussions.append(repo, num, comment_event(user.name, comment))
        hub.discussions.append(repo, num, status_event(user.name, "merged"), status="merged", merge_commit=oid)
    return JSONResponse({"mergeCommitId": oid})


async def change_comment(
    hub, request: Request, repo_type: str, repo_id: str, num: str, comment_id: str, action: str
) -> Response:
    """POST .../discussions/N/comment/ID/{edit,hide}: its author edits it; it or a namespace member hides it."""
    if action not in ("edit", "hide"):
        raise HubError(404, f"Not found: comment/{comment_id}/{action}")
    number = parse_num(num)
    repo, user = hub.writable_repo(request, repo_type, repo_id, propose=True)
    data = await read_json(request, hub.limits.json_body, default={})
    record = hub.discussions.get(repo, number)
    event = next((e for e in record["events"] if e["id"] == comment_id), None)
    if event is None or event["type"] != "comment":
        raise HubError(404, f"Comment {comment_id} not found in #{number} of {repo.repo_id}")
    author = event["author"]["name"]
    allowed = user.name == author or (action == "hide" and user.can_write(repo.repo_id.split("/")[0]))
    if not allowed:
        raise HubError(403, f"Comment {comment_id} of #{number}: only its author {author} may {action} it")
    content = _text_field(data, "content", MAX_COMMENT) if action == "edit" else None
    updated = hub.discussions.edit_comment(repo, number, comment_id, user.name, content=content, hide=action == "hide")
    return JSONResponse({"updatedComment": event_json(updated)})
