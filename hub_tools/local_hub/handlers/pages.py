"""The hub's web pages, server-rendered from `templates/` (Jinja2, no JavaScript): what a browser sees at the URLs
the clients print.

The URLs are the Hub's: `/NS/NAME` (a model), `/datasets/NS/NAME`, `/spaces/NS/NAME`, and under each
`/tree/REV/PATH`, `/blob/REV/PATH`, `/commits/REV`, `/commit/OID`, `/discussions` and `/discussions/N`; `/models`,
`/datasets` and `/spaces` list repos (`?search=`). A revision in a URL is percent-encoded whole
(`refs%2Fpr%2F1`), as `huggingface_hub` prints it.

A repo page shows the rendered card with its `model-index` results as a table, and the branches: checkpoint
branches (`checkpoint-N`) in step order with the metrics of their own cards, then the others and the tags. A
private repo is shown only to members of its namespace: a browser signs in at `/login` with a token, which the hub
keeps (the cookie is a random session id, the token is never sent back in a page).
"""

import math
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hub_tools.branches import checkpoint_step
from hub_tools.local_hub import diffs
from hub_tools.local_hub.errors import HubError
from hub_tools.local_hub.handlers.discussions import details_json, may_download, parse_num, pr_state
from hub_tools.local_hub.handlers.files import last_commits, read_folder, tree_entries
from hub_tools.local_hub.metadata import CARD_PATH
from hub_tools.local_hub.rendering import render_markdown
from hub_tools.local_hub.storage import check_path
from hub_tools.local_hub.users import SESSION_COOKIE as COOKIE
from hub_tools.local_hub.wire import read_body
from hub_tools.repos import COMMIT_PATTERN, REPO_TYPE_PLURALS, URL_PREFIXES

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
LISTING_PAGE = 50
COMMITS_PAGE = 50
MAX_VIEW = 512 * 1024  # bytes of a file shown in its page (larger files: download only)
COOKIE_MAX_AGE = 30 * 24 * 3600

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def _number(value) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


_env.filters.update(size=_size, number=_number, short=lambda oid: (oid or "")[:7], rev=lambda r: quote(r, safe=""))
_env.filters["path"] = lambda p: quote(p, safe="/")  # a file path in a URL: its '/' kept, '?', '#', '%' encoded
_env.filters["day"] = lambda date: (date or "")[:10]


def repo_path(repo) -> str:
    """The web path of a repo: `/NS/NAME`, `/datasets/NS/NAME`, `/spaces/NS/NAME`."""
    return f"/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"


def render(hub, request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    try:
        user = hub.user(request)
    except HubError:  # an unknown bearer token: the page is shown as to anyone
        user = None
    html = _env.get_template(template).render(user=user, path=request.url.path, **context)
    # Pages are private to whoever signed in: never cached by a shared cache, never framed elsewhere.
    headers = {"Cache-Control": "private, no-store", "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff"}
    return HTMLResponse(html, status_code=status_code, headers=headers)


def wants_page(request: Request, path: str) -> bool:
    """A browser asking for a web path (not the API): errors are answered as pages."""
    return not path.lstrip("/").startswith("api/") and "text/html" in request.headers.get("accept", "")


def error_page(hub, request: Request, err: HubError) -> HTMLResponse:
    return render(hub, request, "error.html", err.status, code=err.status, message=err.message, next=request.url.path)


# ---- listings ----
def _summaries(hub, request: Request, repo_type: str, search: str | None) -> list[dict]:
    from hub_tools.local_hub.handlers.repos import main_head, repo_summary

    user = hub.user(request)
    out = []
    for repo in hub.store.list_repos(repo_type):
        if not hub.can_read(user, repo) or (search and search.lower() not in repo.repo_id.lower()):
            continue
        sha, commit = main_head(hub, repo)
        info = repo_summary(hub, repo, sha, commit)
        info["path"] = repo_path(repo)
        out.append(info)
    return sorted(out, key=lambda i: i["lastModified"] or "", reverse=True)


async def home(hub, request: Request) -> Response:
    search = request.query_params.get("search") or None
    sections = [(plural, _summaries(hub, request, kind, search)) for plural, kind in REPO_TYPE_PLURALS.items()]
    return render(hub, request, "home.html", sections=sections, search=search or "", page_size=10)


async def listing(hub, request: Request, listing: str) -> Response:
    if listing not in REPO_TYPE_PLURALS:
        raise HubError(404, f"Not found: /{listing}")
    search = request.query_params.get("search") or None
    items = _summaries(hub, request, REPO_TYPE_PLURALS[listing], search)
    try:
        page = max(0, int(request.query_params.get("p", "0")))
    except ValueError:
        page = 0
    shown = items[page * LISTING_PAGE : (page + 1) * LISTING_PAGE]
    more = len(items) > (page + 1) * LISTING_PAGE
    return render(
        hub, request, "listing.html", kind=listing, items=shown, total=len(items), search=search or "",
        page=page, more=more, query=lambda p: "?" + urlencode({**({"search": search} if search else {}), "p": p}),
    )  # fmt: skip


# ---- a repo ----
def _revision_context(hub, repo, revision: str) -> dict:
    store = hub.store
    refs = store.refs(repo)
    return {
        "repo": repo,
        "base": repo_path(repo),
        "kind": repo.repo_type,
        "revision": revision,
        "branches": sorted(refs["branches"], key=_branch_order),
        "tags": sorted(refs["tags"]),
        "pulls": sorted(store.pr_refs(repo)),
    }


def _branch_order(name: str) -> tuple:
    """main first, then checkpoint branches by step, then the others by name."""
    step = checkpoint_step(name)
    return (name != "main", step is None, step or 0, name)


def model_index_rows(meta: dict | None) -> list[dict]:
    """The `model-index` results of card metadata as table rows: model, task, dataset, metric, value."""
    rows = []
    for model in (meta or {}).get("model-index") or []:
        if not isinstance(model, dict):
            continue
        for result in model.get("results") or []:
            if not isinstance(result, dict):
                continue
            task, dataset = result.get("task") or {}, result.get("dataset") or {}
            for metric in result.get("metrics") or []:
                if not isinstance(metric, dict):
                    continue
                rows.append(
                    {
                        "model": model.get("name", ""),
                        "task": task.get("name") or task.get("type", ""),
                        "dataset": dataset.get("name") or dataset.get("type", ""),
                        "split": dataset.get("split", ""),
                        "metric": metric.get("name") or metric.get("type", ""),
                        "value": metric.get("value"),
                    }
                )
    return rows


def checkpoint_table(hub, repo) -> tuple[list[str], list[dict]]:
    """(metric columns, rows) of the checkpoint branches in step order, each with the metrics of its card."""
    rows = []
    for name, head in hub.store.refs(repo)["branches"].items():
        step = checkpoint_step(name)
        if step is None:
            continue
        card = hub.cards.card(hub.store, repo, head)
        metrics = {f"{r['metric']} ({r['dataset']})": r["value"] for r in model_index_rows(card.meta)}
        rows.append({"name": name, "step": step, "commit": head, "metrics": metrics})
    rows.sort(key=lambda r: r["step"])
    columns = list(dict.fromkeys(c for r in rows for c in r["metrics"]))
    return columns, rows


def card_body(text: str) -> str:
    """A README without its front matter."""
    if text.startswith("---"):
        parts = text.split("\n---", 1)
        if len(parts) == 2:
            return parts[1].split("\n", 1)[1] if "\n" in parts[1] else ""
    return text


async def repo_page(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    revision = "main"
    head = hub.store.resolve(repo, revision)
    card = hub.cards.card(hub.store, repo, head)
    columns, checkpoints = checkpoint_table(hub, repo)
    ckpt_names = {r["name"] for r in checkpoints}
    context = _revision_context(hub, repo, revision)
    other_branches = [b for b in context["branches"] if b not in ckpt_names]
    running = hub.spaces.status(repo.repo_id) if hub.spaces is not None and repo_type == "space" else None
    return render(
        hub, request, "repo.html", **context, head=head, card_html=render_markdown(card_body(card.text)),
        has_card=bool(card.text), meta=card.meta or {}, card_tags=card.tags, results=model_index_rows(card.meta),
        columns=columns, checkpoints=checkpoints, other_branches=other_branches, space=running,
        open_discussions=sum(r["status"] in ("open", "draft") for r in hub.discussions.list(repo)),
    )  # fmt: skip


async def tree_page(hub, request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
    repo, head, files, path = read_folder(hub, request, repo_type, repo_id, revision, path)
    items = tree_entries(files, path, recursive=False)
    commits = last_commits(hub.store, repo, head, items)
    for item in items:
        item["lastCommit"] = commits[item["path"]]
    items.sort(key=lambda i: (i["type"] != "directory", i["path"]))
    return render(
        hub, request, "tree.html", **_revision_context(hub, repo, revision), head=head, items=items, dir=path,
        crumbs=_crumbs(path),
    )  # fmt: skip


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = path.split("/") if path else []
    return [(part, "/".join(parts[: i + 1])) for i, part in enumerate(parts)]


async def blob_page(hub, request: Request, repo_type: str, repo_id: str, revision: str, path: str) -> Response:
    from hub_tools.local_hub.errors import entry_not_found
    from hub_tools.local_hub.handlers.files import check_gate

    repo = hub.readable_repo(request, repo_type, repo_id)
    head = hub.store.resolve(repo, revision)
    check_path(path)
    entry = hub.store.get_commit(repo, head)["files"].get(path)
    if entry is None:
        raise entry_not_found(path, revision)
    text, gated = None, False
    try:
        check_gate(hub, request, repo)
    except HubError:
        gated = True
    if not gated and not entry["lfs"] and entry["size"] <= MAX_VIEW:
        data = hub.store.read_bytes(repo, entry)
        if b"\0" not in data[:8000]:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = None
    return render(
        hub, request, "blob.html", **_revision_context(hub, repo, revision), head=head, file=path, entry=entry,
        text=text, lines=text.splitlines() if text is not None else [], gated=gated,
        crumbs=_crumbs(path), rendered=render_markdown(card_body(text)) if text and path == CARD_PATH else None,
    )  # fmt: skip


async def commits_page(hub, request: Request, repo_type: str, repo_id: str, revision: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    head = hub.store.resolve(repo, revision)
    history = hub.store.history(repo, head)
    try:
        page = max(0, int(request.query_params.get("p", "0")))
    except ValueError:
        page = 0
    shown = history[page * COMMITS_PAGE : (page + 1) * COMMITS_PAGE]
    return render(
        hub, request, "commits.html", **_revision_context(hub, repo, revision), head=head, commits=shown,
        total=len(history), page=page, more=len(history) > (page + 1) * COMMITS_PAGE,
    )  # fmt: skip


async def commit_page(hub, request: Request, repo_type: str, repo_id: str, oid: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    commit = hub.store.get_commit(repo, oid) if COMMIT_PATTERN.match(oid) else None
    if commit is None:
        raise HubError(404, f"Commit {oid} not found in {repo.repo_id}", "RevisionNotFound")
    parent = hub.store.get_commit(repo, commit["parents"][0]) if commit["parents"] else None
    changes = diffs.changes(
        hub.store,
        repo,
        parent["files"] if parent else {},
        commit["files"],
        with_diffs=may_download(hub, request, repo),
    )
    return render(
        hub, request, "commit.html", **_revision_context(hub, repo, oid), commit=commit, changes=changes,
        diff_lines=_diff_lines,
    )  # fmt: skip


def _diff_lines(diff: str) -> list[tuple[str, str]]:
    """(css class, line) of a unified diff, its two header lines dropped."""
    out = []
    for line in diff.splitlines()[2:]:
        kind = "hunk" if line.startswith("@@") else "add" if line[:1] == "+" else "del" if line[:1] == "-" else "ctx"
        out.append((kind, line))
    return out


async def discussions_page(hub, request: Request, repo_type: str, repo_id: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    status = request.query_params.get("status", "all")
    records = [
        r
        for r in reversed(hub.discussions.list(repo))
        if status == "all" or (r["status"] in ("open", "draft")) == (status == "open")
    ]
    return render(
        hub, request, "discussions.html", **_revision_context(hub, repo, "main"), records=records, status=status
    )


async def discussion_page(hub, request: Request, repo_type: str, repo_id: str, num: str) -> Response:
    repo = hub.readable_repo(request, repo_type, repo_id)
    record = hub.discussions.get(repo, parse_num(num))
    with_diffs = may_download(hub, request, repo)
    details = details_json(hub, repo, record, with_diffs=with_diffs)
    changes, conflicts = pr_state(hub, repo, record, with_diffs=with_diffs) if record["isPullRequest"] else ([], [])
    return render(
        hub, request, "discussion.html", **_revision_context(hub, repo, "main"), record=record, details=details,
        changes=changes, conflicts=conflicts, diff_lines=_diff_lines, markdown=render_markdown,
    )  # fmt: skip


# ---- signing in ----
def _local_next(value: str | None) -> str:
    """Where to go after signing in: a path on this hub only (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def login(hub, request: Request) -> Response:
    """GET: the form; POST (token, next): a session for a token the hub knows, then back to `next`."""
    if request.method == "GET":
        return render(hub, request, "login.html", next=_local_next(request.query_params.get("next")), failed=False)
    form = parse_qs((await read_body(request, 64 * 1024)).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _local_next((form.get("next") or ["/"])[0])
    user = hub.users.user_of(token) if token else None
    if user is None:
        return render(hub, request, "login.html", 401, next=target, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE, hub.sessions.open(token), max_age=COOKIE_MAX_AGE, httponly=True, samesite="strict", path="/"
    )
    return response


async def logout(hub, request: Request) -> Response:
    sid = request.cookies.get(COOKIE)
    if sid:
        hub.sessions.close(sid)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
