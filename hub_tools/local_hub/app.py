"""The local hub's application: authentication, and a route table over the raw path.

Routing is done on the *raw* path, not Starlette's decoded one: revisions and tree paths arrive
`quote(x, safe="")`-encoded (`ckpt%2Fstep-100`), which a decoded-path router would split. A route's pattern
names the path's segments: a literal, `{type}` (a repo type's plural: models, datasets, spaces), `{ns}` and
`{name}` (the repo id, `{name}.git` for the LFS endpoint), or a parameter: `{revision}` (one segment),
`{revision+}` (one or more), `{path*}` (zero or more), `{path+}`, `{oid}`. Each is percent-decoded after the
segments are split. Paths under `/api/` are the API; any other path is a repo's web path (resolve, LFS), with
the repo type's URL prefix (`repos.URL_PREFIXES`): there a reserved namespace (a prefix) never matches `{ns}`.

Every error has the Hub's shape (`errors.py`); a name that `hub_tools.repos` refuses is a 400.

Git itself (clone, fetch, push, and the LFS batch API and transfers under `/{repo}.git/info/lfs/`) is served by
`githttp.GitHttp`, mounted in front of the route table; both answer from the same `GitStore`, with the same users.

Nothing stalls the event loop: handlers read the request on the loop (bodies within a per-endpoint limit, the
token and the repo checked before a write body is read) and hand the store work to a thread pool of
`Limits.store_threads` threads (`LocalHub.run`); more than `Limits.max_requests` requests in flight are answered
with a 503 at once rather than queued.
"""

import errno
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from hub_tools.local_hub import faults as _faults
from hub_tools.local_hub.discussions import Discussions
from hub_tools.local_hub.errors import (
    HubError,
    RateLimitedLog,
    bad_request,
    error_response,
    from_os_error,
    not_found,
    repo_not_found,
)
from hub_tools.local_hub.githttp import GitHttp
from hub_tools.local_hub.gitstore import GitStore, Repo
from hub_tools.local_hub.handlers import discussions, files, manage, pages, repos, uploads
from hub_tools.local_hub.metadata import CardCache
from hub_tools.local_hub.spaces_runner import SpaceRunner
from hub_tools.local_hub.users import SESSION_COOKIE, Sessions, User, Users
from hub_tools.local_hub.wire import raw_path
from hub_tools.repos import REPO_TYPE_PLURALS, RESERVED_NAMESPACES, URL_PREFIXES, InvalidName

logger = logging.getLogger("babyhub.local_hub")


@dataclass
class Limits:
    """What one request may cost. Change them on `LocalHub.limits` (tests lower them)."""

    json_body: int = 2 * 1024 * 1024  # JSON endpoints (create, settings, refs, preupload, discussions, validate-yaml)
    paths_info_body: int = 8 * 1024 * 1024  # up to files.MAX_PATHS_INFO paths
    commit_body: int = 512 * 1024 * 1024  # NDJSON: small files inline (base64); big files go through LFS
    commit_line: int = 32 * 1024 * 1024  # one inline file (plain git files are at most 10 MB)
    store_threads: int = 8  # store work in parallel (reads of other repos go on while one repo commits)
    max_requests: int = 256  # requests in flight; beyond, a 503 with Retry-After


# ---- the route table ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    """`methods` on the raw-path `pattern` go to `handler(hub, request, **params)`."""

    methods: frozenset[str]
    pattern: tuple[str, ...]
    handler: Callable
    repo_type: str | None = None  # a web path's type, fixed by its URL prefix

    @classmethod
    def of(cls, methods: str, pattern: str, handler: Callable, repo_type: str | None = None) -> "Route":
        return cls(
            frozenset(methods.split()), tuple(p for p in pattern.strip("/").split("/") if p), handler, repo_type
        )

    def match(self, method: str, segs: list[str]) -> dict | None:
        """The handler's keyword arguments when `method` and the raw segments fit this route, else None."""
        if method not in self.methods:
            return None
        params = {"repo_type": self.repo_type} if self.repo_type else {}
        ns = name = None
        for index, part in enumerate(self.pattern):
            if part.endswith(("+}", "*}")):  # the rest of the path, joined again
                rest = segs[index:]
                if part.endswith("+}") and not rest:
                    return None
                params[part[1:-2]] = unquote("/".join(rest))
                break
            if index >= len(segs):
                return None
            seg = segs[index]
            if part == "{type}":
                if seg not in REPO_TYPE_PLURALS:
                    return None
                params["repo_type"] = REPO_TYPE_PLURALS[seg]
            elif part == "{ns}":
                ns = unquote(seg)
                if self.repo_type and ns.lower() in RESERVED_NAMESPACES:  # a web path's URL prefix, not a namespace
                    return None
            elif part == "{name}":
                name = unquote(seg)
            elif part == "{name}.git":
                if not seg.endswith(".git"):
                    return None
                name = unquote(seg)[:-4]
            elif part.startswith("{"):
                params[part[1:-1]] = unquote(seg)
            elif seg != part:
                return None
        else:
            if len(segs) != len(self.pattern):
                return None
        if ns is not None:
            params["repo_id"] = f"{ns}/{name}"
        return params


def in_pool(handler: Callable) -> Callable:
    """`handler` (a coroutine that never awaits: it reads the store and renders) run in the store's thread pool.

    The pages and a few listings read every file or repo they show; run on the loop, one of them would hold every
    other client for as long as it takes.
    """

    @functools.wraps(handler)
    async def pooled(hub, request: Request, **params) -> Response:
        return await hub.run(_drive, handler(hub, request, **params))

    return pooled


def _drive(coroutine):
    """The result of a coroutine that never awaits, run to its end in this thread."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError(f"{coroutine.__qualname__} awaited something: it cannot run in the thread pool")


REPO_API = "api/{type}/{ns}/{name}"
DISCUSSION = f"{REPO_API}/discussions/{{num}}"
# `REPO_API/ACTION/REVISION`: the endpoints that act on one revision (for `branch`, the branch to create or delete).
ON_A_REVISION = {
    "revision": {"GET": repos.repo_info},
    "paths-info": {"POST": files.paths_info},
    "commits": {"GET": repos.list_commits},
    "preupload": {"POST": uploads.preupload},
    "commit": {"POST": uploads.commit},
    "branch": {"POST": repos.create_branch, "DELETE": repos.delete_branch},
    "tag": {"POST": repos.create_tag, "DELETE": repos.delete_tag},
    "super-squash": {"POST": manage.super_squash},
    "xet-write-token": {"GET": manage.xet_token},
    "xet-read-token": {"GET": manage.xet_token},
}
API_ROUTES = [
    Route.of("GET", "api/whoami-v2", repos.whoami),
    Route.of("POST", "api/repos/create", repos.create_repo),
    Route.of("DELETE", "api/repos/delete", repos.delete_repo),
    Route.of("POST", "api/repos/move", manage.move_repo),
    Route.of("GET", "api/settings/repositories", in_pool(manage.list_user_repos)),
    Route.of("GET", "api/organizations/{org}/settings/repositories", in_pool(manage.list_user_repos)),
    Route.of("POST", "api/validate-yaml", uploads.validate_yaml),
    Route.of("GET", "api/{type}", repos.list_repos),
    Route.of("GET", REPO_API, repos.repo_info),
    Route.of("GET", f"{REPO_API}/refs", repos.list_refs),
    Route.of("PUT", f"{REPO_API}/settings", repos.update_settings),
    Route.of("POST", f"{REPO_API}/duplicate", manage.duplicate_repo),
    Route.of("GET", f"{REPO_API}/runtime", in_pool(manage.space_runtime)),
    Route.of("GET", f"{REPO_API}/tree/{{revision}}/{{path*}}", files.list_tree),
    Route.of("GET POST", f"{REPO_API}/discussions", discussions.discussions),
    Route.of("GET", DISCUSSION, in_pool(discussions.discussion_details)),
    Route.of("POST", f"{DISCUSSION}/{{action}}", discussions.change_discussion),
    Route.of("POST", f"{DISCUSSION}/comment/{{comment_id}}/{{action}}", discussions.change_comment),
    *(
        Route.of(method, f"{REPO_API}/{action}/{{revision+}}", handler)
        for action, handlers in ON_A_REVISION.items()
        for method, handler in handlers.items()
    ),
]
SITE_ROUTES = [
    Route.of("GET", "", in_pool(pages.home)),
    Route.of("GET POST", "login", pages.login),
    Route.of("GET POST", "logout", pages.logout),
    Route.of("GET", "{listing}", in_pool(pages.listing)),  # models, datasets, spaces (after the literal paths)
]
WEB_ROUTES = [
    route
    for repo_type, prefix in URL_PREFIXES.items()
    for route in (
        Route.of("GET HEAD", f"{prefix}{{ns}}/{{name}}/resolve/{{revision}}/{{path+}}", files.resolve_file, repo_type),
        Route.of("GET", f"{prefix}{{ns}}/{{name}}", in_pool(pages.repo_page), repo_type),
        Route.of("GET", f"{prefix}{{ns}}/{{name}}/tree/{{revision}}/{{path*}}", in_pool(pages.tree_page), repo_type),
        Route.of("GET", f"{prefix}{{ns}}/{{name}}/blob/{{revision}}/{{path+}}", in_pool(pages.blob_page), repo_type),
        Route.of("GET", f"{prefix}{{ns}}/{{name}}/commits/{{revision}}", in_pool(pages.commits_page), repo_type),
        Route.of("GET", f"{prefix}{{ns}}/{{name}}/commit/{{oid}}", in_pool(pages.commit_page), repo_type),
        Route.of("GET", f"{prefix}{{ns}}/{{name}}/discussions", in_pool(pages.discussions_page), repo_type),
        Route.of("GET", f"{prefix}{{ns}}/{{name}}/discussions/{{num}}", in_pool(pages.discussion_page), repo_type),
    )
]


def find_route(method: str, path: str) -> tuple[Callable, dict]:
    """The handler of a raw path and its keyword arguments; a 404 when no route serves it."""
    segs = path.strip("/").split("/") if path.strip("/") else []
    if segs[:1] == ["api"]:
        tables = [API_ROUTES]
    else:
        tables = [SITE_ROUTES if len(segs) <= 1 else [], WEB_ROUTES]
    for table in tables:
        for route in table:
            params = route.match(method, segs)
            if params is not None:
                return route.handler, params
    raise not_found(unquote(path))


# ---- authentication -----------------------------------------------------------------------------------------------
def bearer_token(request: Request) -> str | None:
    """The request's bearer token; None without an Authorization header; 401 for another scheme or a token that
    is not printable ASCII (no real token is)."""
    header = request.headers.get("authorization", "")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token or not token.isascii() or not token.isprintable():
        raise HubError(401, "Invalid credentials in Authorization header")
    return token


# ---- the application ----------------------------------------------------------------------------------------------
class LocalHub:
    """The store, who may read and write it, the request limits, and the ASGI app that serves them."""

    def __init__(
        self,
        root: Path | str,
        *,
        token_file: Path | str | None = None,
        tokens: Iterable[str] | None = None,
        limits: Limits | None = None,
        faults: bool = False,
        spaces: SpaceRunner | None = None,
    ):
        self.store = GitStore(root)
        self.users = Users(tokens, token_file)
        self.sessions = Sessions()
        self.limits = limits or Limits()
        self.limiter = anyio.CapacityLimiter(self.limits.store_threads)
        self.faults = _faults.FaultInjector() if faults else None
        self.discussions = Discussions()
        self.cards = CardCache()
        self.spaces = spaces
        self.naming_lock = threading.Lock()  # creating and renaming repos: one case-insensitive name at a time
        self.git = GitHttp(
            self.store,
            check_token=self.users.user_of,
            can_read=self.may_download,
            can_write=lambda user, repo: user.can_write(repo.repo_id.split("/")[0]),
            can_upload=lambda user, repo: user.role == "write",  # a pull request's objects: as preupload's propose
            find_repo=self.find_repo,
            run=self.run,
        )
        self.in_flight = 0
        self.os_errors = RateLimitedLog(logger, interval=10.0)

    async def run(self, fn: Callable, *args):
        """`fn(*args)` in the store's thread pool: the event loop goes on serving other requests meanwhile."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=self.limiter)

    def close(self) -> None:
        """Close the store (its open repositories and the root's owner lock)."""
        self.store.close()

    # -- who is asking --
    def user(self, request: Request) -> User | None:
        """The user behind the request's token; None when anonymous; 401 for an unknown bearer token.

        Pages are read with the login cookie as well (on GET and HEAD only: a cookie never authorises a write).
        """
        token = bearer_token(request)
        if token is None:
            sid = request.cookies.get(SESSION_COOKIE) if request.method in ("GET", "HEAD") else None
            token = self.sessions.token(sid) if sid else None
            return self.users.user_of(token) if token else None
        user = self.users.user_of(token)
        if user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return user

    def require_user(self, request: Request) -> User:
        user = self.user(request)
        if user is None:
            raise HubError(401, "Invalid username or password.")
        return user

    # -- repos, by their case-insensitive ids --
    def find_repo(self, repo_type: str, repo_id: str) -> Repo | None:
        """The repo `repo_id` names, whatever the case of its letters (as on the Hub); its own spelling kept."""
        repo = self.store.get_repo(repo_type, repo_id)
        if repo is not None:
            return repo
        lowered = repo_id.lower()
        return next((r for r in self.store.list_repos(repo_type) if r.repo_id.lower() == lowered), None)

    def can_read(self, user: User | None, repo: Repo) -> bool:
        """Public repos to anyone; a private one to the members of its namespace."""
        return not repo.private or (user is not None and user.member_of(repo.repo_id.split("/")[0]))

    def may_download(self, user: User | None, repo: Repo) -> bool:
        """Whether `user` may read a repo's files (clone it, fetch its LFS objects): readable, and past its gate."""
        if not self.can_read(user, repo):
            return False
        if not repo.gated:
            return True
        return user is not None and (repo.gated != "manual" or user.member_of(repo.repo_id.split("/")[0]))

    def readable_repo(self, request: Request, repo_type: str, repo_id: str) -> Repo:
        user = self.user(request)
        repo = self.find_repo(repo_type, repo_id)
        if repo is None or not self.can_read(user, repo):
            # As on the Hub: a private repo is indistinguishable from a missing one to those who cannot read it.
            raise repo_not_found(repo_type, repo_id, 401 if user is None else 404)
        return repo

    def writable_repo(
        self, request: Request, repo_type: str, repo_id: str, *, propose: bool = False
    ) -> tuple[Repo, User]:
        """The repo and the user, when the user may write to it; with `propose`, when it may open a pull request.

        Writing needs a write token of a member of the repo's namespace; proposing (uploading for a pull request,
        opening or commenting a discussion) needs a write token and a repo the user can read.
        """
        user = self.require_user(request)
        repo = self.find_repo(repo_type, repo_id)
        if repo is None or not self.can_read(user, repo):
            raise repo_not_found(repo_type, repo_id)
        namespace = repo.repo_id.split("/")[0]
        if propose and user.role == "write":
            return repo, user
        if not user.can_write(namespace):
            raise HubError(403, user.refusal(namespace, f"{repo_type} {repo.repo_id}"))
        return repo, user

    def check_namespace(self, user: User, namespace: str, what: str) -> None:
        """403 unless `user` may write to `namespace` (creating, moving or duplicating a repo into it)."""
        if not user.can_write(namespace):
            raise HubError(403, user.refusal(namespace, what))

    # -- ASGI --
    def build_app(self):
        """The ASGI app: git paths to `GitHttp`, the rest to `dispatch`, within the in-flight limit; with faults
        switched on, wrapped in the harness (outermost, so that it sees every request)."""
        app = self.limit_requests(self.git.wrap(self.asgi))
        return _faults.install(app, self.faults) if self.faults is not None else app

    async def asgi(self, scope, receive, send) -> None:
        """Every HTTP request to `dispatch`, whatever its path (the route table reads the raw path itself; a
        decoded-path router would refuse a path with a newline in it before the hub could answer in its shape)."""
        if scope["type"] == "http":
            response = await self.dispatch(Request(scope, receive))
            await response(scope, receive, send)

    def limit_requests(self, app):
        """`app` answering a 503 (Retry-After: 1) at once when `limits.max_requests` requests are in flight."""

        async def limited(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            if self.in_flight >= self.limits.max_requests:
                busy = HubError(503, "The local hub is busy; retry in a moment", headers={"Retry-After": "1"})
                return await error_response(busy)(scope, receive, send)
            self.in_flight += 1
            try:
                return await app(scope, receive, send)
            finally:
                self.in_flight -= 1

        return limited

    async def dispatch(self, request: Request) -> Response:
        path = ""
        try:
            path = raw_path(request.scope)
            if "\0" in unquote(path) or "\\" in unquote(path):
                raise bad_request("Invalid characters in path")
            handler, params = find_route(request.method, path)
            return await handler(self, request, **params)
        except HubError as err:
            return self._error(request, path, err)
        except InvalidName as err:  # a repo id, revision or type outside the Hub's grammar
            return self._error(request, path, bad_request(str(err)))
        except RecursionError:  # JSON or YAML nested deeper than the parser goes
            return self._error(request, path, bad_request("The request is nested too deeply"))
        except ClientDisconnect:  # the client went away mid-request: nobody to answer
            return Response(status_code=400)
        except FileNotFoundError:  # a repo deleted while this request read it
            return error_response(HubError(404, "Repository not found (deleted)", "RepoNotFound"))
        except OSError as err:  # a full disk (507), no descriptors left (503): said once per interval in the log
            answer = from_os_error(err)
            if answer is None:
                return self._internal_error(request)
            kind = errno.errorcode.get(err.errno, "OSError")
            self.os_errors.warning(kind, "local hub: %s on %s %s", err, request.method, request.url.path)
            return error_response(answer)
        except Exception:  # a bug must not leak a traceback to the client
            return self._internal_error(request)

    def _internal_error(self, request: Request) -> Response:
        logger.exception("local hub: unexpected error on %s %s", request.method, request.url.path)
        return error_response(HubError(500, "Internal error in the local hub"))

    def _error(self, request: Request, path: str, err: HubError) -> Response:
        """A browser asking for a page gets the error as a page; clients get the Hub's JSON error."""
        if pages.wants_page(request, path):
            return pages.error_page(self, request, err)
        return error_response(err)
