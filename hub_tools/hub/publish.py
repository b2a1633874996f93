"""Publishing that never loses a push: one folder (or a few files) -> one commit on the Hub.

Every push works out what the remote revision lacks, by content (git blob sha1 for small files,
sha256 for LFS files), and sends it as one commit whose parent is the head it compared against. So:

- a retry after a dropped connection or a 5xx starts over from the remote state: files already
  uploaded are not sent again (the LFS batch answers "already stored"), and a commit that landed
  before the connection dropped is recognised (nothing left to send, the head moved: that was us);
- nothing changed -> no commit (`PushResult.commit_oid is None`);
- a branch other than main starts from the repo's *first* commit, so a checkpoint branch holds that
  checkpoint's files only, never a copy of main;
- an existing branch holding other content is not overwritten unless `overwrite_branch=True`.

    from hub_tools.hub.publish import push_folder
    result = push_folder("out/checkpoint-2000", "me/baby-dpo", revision="checkpoint-2000")
"""

import fnmatch
import hashlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub_tools import repos
from hub_tools.errors import BabyhubError
from hub_tools.hubenv import is_local_endpoint
from hub_tools.repos import git_blob_hasher, git_blob_sha1, repo_url  # repo_url: model_card and demo import it here

logger = logging.getLogger(__name__)

BACKOFF_BASE = 1.0  # seconds; doubled per attempt, capped at BACKOFF_MAX (tests lower it)
BACKOFF_MAX = 30.0
# Files a push never sends: local caches and VCS folders (as huggingface_hub's upload_folder).
ALWAYS_IGNORED = [".git/*", "*/.git/*", ".cache/huggingface/*", "*/.cache/huggingface/*", ".DS_Store", "*/.DS_Store"]
KEEP_ON_BRANCH = {".gitattributes"}  # files of the first commit a mirror push never deletes


class PushError(BabyhubError):
    """A push that could not start or did not finish: the message names the folder or files, the repo, the revision."""


class TokenRefusedError(PushError):
    """The hub refused the token (HTTP 401/403): retrying cannot help."""


class BranchConflictError(PushError):
    """The branch already holds other content, and the push was not asked to replace it."""


class RetriesExhaustedError(PushError):
    """Every attempt failed on a transient error; what was uploaded stays, so running the push again resumes."""


@dataclass
class PushResult:
    repo_id: str
    repo_type: str
    revision: str
    commit_oid: str | None  # None: nothing changed, no commit was made
    url: str  # the branch's page; for a pull request, the pull request's page
    pr_url: str | None = None  # set when the push opened (or found) a pull request instead of writing the branch
    pr_num: int | None = None


@dataclass(frozen=True)
class _LocalFile:
    path_in_repo: str
    source: Path | bytes
    size: int
    sha256: str
    sha1: str  # git blob id

    @classmethod
    def build(cls, path_in_repo: str, source: Path | bytes) -> "_LocalFile":
        if isinstance(source, bytes):
            return cls(path_in_repo, source, len(source), hashlib.sha256(source).hexdigest(), git_blob_sha1(source))
        size = source.stat().st_size
        sha256, sha1 = hashlib.sha256(), git_blob_hasher(size)
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha256.update(chunk)
                sha1.update(chunk)
        return cls(path_in_repo, source, size, sha256.hexdigest(), sha1.hexdigest())


def _matches(path: str, allow: list[str] | None, ignore: list[str] | None) -> bool:
    if allow and not any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.rstrip("/") + "/*") for p in allow):
        return False
    return not any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p.rstrip("/") + "/*") for p in ignore or [])


def _as_list(patterns: str | list[str] | None) -> list[str] | None:
    return [patterns] if isinstance(patterns, str) else patterns


def list_folder_files(folder: Path, allow_patterns=None, ignore_patterns=None) -> list[str]:
    """The paths (in the repo, sorted) of the files of `folder` a push would send; nothing is read or hashed."""
    allow, ignore = _as_list(allow_patterns), (_as_list(ignore_patterns) or []) + ALWAYS_IGNORED
    files = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if _matches(rel, allow, ignore):
            files.append(rel)
    return files


def read_folder_files(folder: Path, allow_patterns=None, ignore_patterns=None) -> dict[str, _LocalFile]:
    """The files of `folder` a push would send, keyed by their path in the repo, each hashed (sha1 and sha256)."""
    return {
        rel: _LocalFile.build(rel, folder / rel) for rel in list_folder_files(folder, allow_patterns, ignore_patterns)
    }


def _causes(err: BaseException) -> list[BaseException]:
    """`err` and what caused it (`__cause__`, else the unsuppressed `__context__`), innermost first.

    huggingface_hub wraps a failed LFS transfer in a `RuntimeError` (and its HTTP errors wrap httpx's): what went
    wrong is the innermost cause, so that is where an error is judged.
    """
    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        chain.append(err)
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    return chain[::-1]


def _response(err: BaseException):
    """The HTTP response behind `err`: of its innermost cause that carries one; None for a connection error."""
    for cause in _causes(err):
        response = getattr(cause, "response", None)
        if response is not None and isinstance(getattr(response, "status_code", None), int):
            return response
    return None


def _is_transfer(response) -> bool:
    """True for the answer to an LFS transfer (the PUT of a file's bytes to the URL the batch API granted)."""
    request = getattr(response, "request", None)
    url = str(getattr(request, "url", ""))
    return getattr(request, "method", None) == "PUT" and "/api/" not in url


def _is_transient(err: BaseException) -> bool:
    """Worth another attempt, judged on the innermost cause: a connection error or timeout, a 5xx, 408, 429, a moved
    head (409/412), or a 403 from an LFS transfer (its grant expired, or the server restarted: the next attempt asks
    the batch API for a new one)."""
    import httpx2

    response = _response(err)
    if response is not None:
        status = response.status_code
        return status >= 500 or status in (408, 409, 412, 429) or (status == 403 and _is_transfer(response))
    return any(isinstance(c, httpx2.TransportError | ConnectionError | TimeoutError) for c in _causes(err))


def _with_retries(action: Callable[[int], PushResult], max_retries: int, what: str) -> PushResult:
    """Run `action(attempt)` until it returns, retrying transient errors with backoff; `what` names the push.

    Whatever finally stops a push is a `PushError` whose message ends with "run the same push again" (what was
    uploaded stays on the hub, so the next run resumes): the CLI prints it, never a traceback.
    """
    for attempt in range(max_retries + 1):
        try:
            return action(attempt)
        except BabyhubError:
            raise
        except Exception as err:
            response = _response(err)
            status = response.status_code if response is not None else None
            if not _is_transient(err):
                if status in (401, 403):
                    raise TokenRefusedError(
                        f"{what}: the hub refused the token (HTTP {status}); set HF_TOKEN (or pass token=) to a "
                        "token with write access to this namespace, then run the same push again"
                    ) from err
                if status is not None:  # the hub answered, and said no: name what it refused
                    raise PushError(
                        f"{what}: the hub refused it (HTTP {status}: {hub_message(err)}); fix that, then run the same "
                        "push again"
                    ) from err
                logger.debug("%s: unexpected error", what, exc_info=True)
                raise PushError(
                    f"{what} stopped ({_describe(err)}); what was uploaded is kept: run the same push again"
                ) from err
            if attempt == max_retries:
                raise RetriesExhaustedError(
                    f"{what} failed after {max_retries + 1} attempts ({_describe(err)}); "
                    "nothing was lost: run the same push again"
                ) from err
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2**attempt) * (0.5 + random.random() / 2)
            logger.warning("%s: attempt %d failed (%s); retrying in %.1fs", what, attempt + 1, _describe(err), delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _describe(err: BaseException) -> str:
    """`Type: message` of an error and, when huggingface_hub wrapped it, of its innermost cause."""
    inner = _causes(err)[0]
    text = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")
    if inner is not err:
        text += f", caused by {type(inner).__name__}: {str(inner).splitlines()[0] if str(inner) else ''}".rstrip(": ")
    return text


def hub_message(err) -> str:
    """The hub's own words for an HTTP error (its X-Error-Message header), else the client's message."""
    response = _response(err)
    message = response.headers.get("X-Error-Message") if response is not None else None
    return message or (str(err).splitlines() or [type(err).__name__])[0]


def hub_api(token: str | None = None, endpoint: str | None = None):
    """An HfApi for `endpoint` (default: HF_ENDPOINT), set to upload without Xet when it is a local hub."""
    import os

    from huggingface_hub import HfApi, constants

    # huggingface_hub reads this flag each time it decides how to upload; a local hub has no Xet.
    local = is_local_endpoint(endpoint or constants.ENDPOINT)
    disabled_by_user = os.environ.get("HF_HUB_DISABLE_XET", "").upper() in {"1", "ON", "TRUE", "YES"}
    constants.HF_HUB_DISABLE_XET = local or disabled_by_user
    return HfApi(endpoint=endpoint, token=token)


def _space_sdk(files: dict[str, _LocalFile]) -> str:
    readme = files.get("README.md")
    if readme is not None:
        import yaml

        text = readme.source.decode() if isinstance(readme.source, bytes) else readme.source.read_text()
        if text.startswith("---"):
            front = text.split("---", 2)[1]
            sdk = (yaml.safe_load(front) or {}).get("sdk")
            if sdk:
                return sdk
    return "gradio"


class _Session:
    """One push: the repo, the branch, and the head seen before the push started."""

    def __init__(self, api, repo_id: str, repo_type: str, revision: str):
        self.api, self.repo_id, self.repo_type, self.revision = api, repo_id, repo_type, revision
        self.head_before: str | None = None
        self.started = False
        self.branch_existed: bool | None = None

    def ensure_repo(self, private: bool, files: dict[str, _LocalFile]) -> None:
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            self.api.repo_info(self.repo_id, repo_type=self.repo_type)
        except RepositoryNotFoundError:
            sdk = _space_sdk(files) if self.repo_type == "space" else None
            self.api.create_repo(self.repo_id, repo_type=self.repo_type, private=private, exist_ok=True, space_sdk=sdk)

    def first_commit(self) -> str:
        commits = self.api.list_repo_commits(self.repo_id, repo_type=self.repo_type, revision="main")
        return commits[-1].commit_id

    def head(self) -> str:
        """The branch head, creating the branch from the first commit if it does not exist."""
        refs = self.api.list_repo_refs(self.repo_id, repo_type=self.repo_type)
        branches = {b.name: b.target_commit for b in refs.branches}
        if self.revision in {t.name for t in refs.tags}:
            raise PushError(f"cannot push to {self.repo_id}@{self.revision}: it is a tag; push to a branch")
        if self.branch_existed is None:
            self.branch_existed = self.revision in branches
        if self.revision not in branches:
            self.api.create_branch(
                self.repo_id,
                repo_type=self.repo_type,
                branch=self.revision,
                revision=self.first_commit(),
                exist_ok=True,
            )
            return self.head()
        if not self.started:
            self.started = True
            self.head_before = branches[self.revision]
        return branches[self.revision]

    def remote_files(self, revision: str) -> dict[str, tuple[str, str | None]]:
        """{path: (git blob id, sha256 if LFS)} at a commit."""
        from huggingface_hub.hf_api import RepoFile

        out = {}
        for item in self.api.list_repo_tree(self.repo_id, repo_type=self.repo_type, revision=revision, recursive=True):
            if isinstance(item, RepoFile):
                out[item.path] = (item.blob_id, item.lfs.sha256 if item.lfs else None)
        return out

    def result(self, commit_oid: str | None) -> PushResult:
        from huggingface_hub import constants

        endpoint = self.api.endpoint or constants.ENDPOINT
        if self.revision == "main":
            url = repo_url(endpoint, self.repo_id, self.repo_type)
        else:
            url = repos.revision_url(endpoint, self.repo_id, self.repo_type, self.revision)
        return PushResult(self.repo_id, self.repo_type, self.revision, commit_oid, url)


def _check_target(repo_id: str, repo_type: str, revision: str) -> None:
    """Refuse a repo id, type or branch the hub would refuse, before anything is read, hashed or sent."""
    repos.check_repo_id(repo_id)
    repos.check_repo_type(repo_type)
    try:
        repos.check_ref_name(revision)
    except repos.InvalidName as err:
        raise repos.InvalidName(f"cannot push to {repo_id}@{revision}: {err}; a push goes to a branch") from None


def _same(local: _LocalFile, remote: tuple[str, str | None]) -> bool:
    blob_id, sha256 = remote
    return local.sha256 == sha256 if sha256 else local.sha1 == blob_id


def _changed(files: dict[str, _LocalFile], remote: dict[str, tuple[str, str | None]]) -> list[_LocalFile]:
    """The local files that `remote` lacks or holds with other content."""
    return [f for path, f in files.items() if path not in remote or not _same(f, remote[path])]


def _commit(
    session: _Session,
    head: str,
    remote: dict[str, tuple[str, str | None]],
    files: dict[str, _LocalFile],
    deletions: list[str],
    message: str,
    *,
    check_parent: bool = True,
) -> str | None:
    """One commit with the changed files; None (and no commit) when nothing changed since `head`.

    `remote` is `session.remote_files(head)`. With `check_parent` the commit only lands on `head` (a mirror
    push must not delete files someone added meanwhile); pure additions may land on a newer head, so
    concurrent pushers do not collide.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    ops = [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.source) for f in _changed(files, remote)]
    ops += [CommitOperationDelete(path_in_repo=p) for p in deletions if p in remote]
    if not ops:
        # Nothing left to send. If the head moved since the push began, an earlier attempt's commit
        # landed before its connection dropped: report it.
        return head if head != session.head_before else None
    info = session.api.create_commit(
        session.repo_id,
        ops,
        commit_message=message,
        repo_type=session.repo_type,
        revision=session.revision,
        parent_commit=head if check_parent else None,
    )
    return info.oid


def push_folder(
    folder,
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str = "main",
    private: bool = False,
    commit_message: str | None = None,
    allow_patterns=None,
    ignore_patterns=None,
    overwrite_branch: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    max_retries: int = 5,
) -> PushResult:
    """Make `revision` of `repo_id` hold exactly the folder's files (plus the first commit's .gitattributes).

    Remote files the folder lacks are deleted (only those matching allow/ignore patterns); on main
    that is how a re-push removes stale files, and nothing is lost: history keeps every commit.
    What the remote already holds (same content) is not sent again, so a retry or a second run resumes
    where the last one stopped, and a push with nothing new makes no commit.

    Args:
        folder: the folder to publish; its layout becomes the repo's.
        repo_id: `NAMESPACE/NAME`; created (with `private`) when it does not exist.
        repo_type: `model`, `dataset` or `space` (a Space's SDK is read from its README front matter).
        revision: the branch to push to; a new branch starts from the repo's first commit, not from main.
        private: the visibility of a repo this push creates (an existing repo keeps its own).
        commit_message: the commit title (default `Upload <folder name>`).
        allow_patterns: fnmatch patterns a file must match to be pushed (and a remote file to be deleted).
        ignore_patterns: fnmatch patterns of files never pushed nor deleted (VCS and cache folders always are).
        overwrite_branch: replace an existing branch (other than main) that holds other content, instead of
            refusing with `BranchConflictError`.
        token: the write token (default: HF_TOKEN or the saved login).
        endpoint: the hub (default: HF_ENDPOINT); a local hub is reached without Xet.
        max_retries: further attempts after a transient failure (connection, 5xx, 429, a moved head).

    Returns:
        A `PushResult`: `commit_oid` is the new commit, or None when the branch already held these files.

    Raises:
        InvalidName: the repo id, type or branch name is one the hub would refuse (nothing was read or sent).
        PushError: no folder or no files to push, a tag as the target, or a request the hub refused;
            `TokenRefusedError`, `BranchConflictError` and `RetriesExhaustedError` say which.
    """
    folder = Path(folder)
    _check_target(repo_id, repo_type, revision)
    if not folder.is_dir():
        raise PushError(f"cannot push {folder}: not a folder; build it first or check the path")
    files = read_folder_files(folder, allow_patterns, ignore_patterns)
    if not files:
        raise PushError(f"cannot push {folder} to {repo_id}: no files to push (check allow/ignore patterns)")
    api = hub_api(token, endpoint)
    session = _Session(api, repo_id, repo_type, revision)
    message = commit_message or f"Upload {folder.name}"
    allow, ignore = _as_list(allow_patterns), _as_list(ignore_patterns)

    def attempt(number: int) -> PushResult:
        session.ensure_repo(private, files)
        head = session.head()
        remote = session.remote_files(head)
        deletions = [p for p in remote if p not in files and p not in KEEP_ON_BRANCH and _matches(p, allow, ignore)]
        if revision != "main" and session.branch_existed and not overwrite_branch:
            pushed_by_us = head != session.head_before
            # first_commit() lists main's whole history: only asked when the head is not our own commit.
            if not pushed_by_us and head != session.first_commit() and (deletions or _changed(files, remote)):
                raise BranchConflictError(
                    f"branch {revision!r} of {repo_id} already holds other content than {folder}; to replace it "
                    "(history keeps the old commits) push with overwrite_branch=True, or push to a new branch"
                )
        return session.result(_commit(session, head, remote, files, deletions, message))

    return _with_retries(attempt, max_retries, f"push of {folder} to {repo_id}@{revision}")


def push_files(
    files: dict,
    repo_id: str,
    *,
    repo_type: str = "model",
    revision: str = "main",
    commit_message: str | None = None,
    create_pr: bool | str = False,
    token: str | None = None,
    endpoint: str | None = None,
    max_retries: int = 5,
) -> PushResult:
    """Add or replace some files ({path_in_repo: bytes | Path}) in one commit, keeping the rest.

    Args:
        files: {path in the repo: the content (bytes) or a local file}.
        repo_id: `NAMESPACE/NAME`; created when it does not exist (not for a pull request).
        repo_type: `model`, `dataset` or `space`.
        revision: the branch to write, or that a pull request targets.
        commit_message: the commit title (and a pull request's title).
        create_pr: True: propose the change as a pull request on `revision` instead of writing it; "auto": write
            it, and open a pull request when the hub refuses the token write access to the repo (HTTP 403), as one
            adds evaluation results to a model one does not own.
        token: the token (default: HF_TOKEN or the saved login).
        endpoint: the hub (default: HF_ENDPOINT).
        max_retries: further attempts after a transient failure.

    Returns:
        A `PushResult`; after a pull request, `pr_url` and `pr_num` say which (and `url` is its page).

    Raises:
        PushError: no files, a missing file, a tag as the target, a request the hub refused (`TokenRefusedError`
            when it refused the token, also for the pull request), or retries exhausted.
    """
    if create_pr not in (True, False, "auto"):
        raise PushError(f"push to {repo_id}: create_pr must be True, False or 'auto', not {create_pr!r}")
    _check_target(repo_id, repo_type, revision)
    local = {}
    for path_in_repo, source in files.items():
        source = source if isinstance(source, bytes) else Path(source)
        if isinstance(source, Path) and not source.is_file():
            raise PushError(f"cannot push {source} as {path_in_repo} to {repo_id}: file not found")
        local[path_in_repo] = _LocalFile.build(path_in_repo, source)
    if not local:
        raise PushError(f"nothing to push to {repo_id}@{revision}: give push_files at least one file")
    api = hub_api(token, endpoint)
    session = _Session(api, repo_id, repo_type, revision)
    message = commit_message or f"Upload {', '.join(sorted(local))[:200]}"
    what = f"push of {len(local)} file(s) to {repo_id}@{revision}"

    def attempt(number: int) -> PushResult:
        session.ensure_repo(False, local)
        head = session.head()
        return session.result(
            _commit(session, head, session.remote_files(head), local, [], message, check_parent=False)
        )

    if create_pr is True:
        return _with_retries(lambda number: _propose(session, local, message, number), max_retries, what)
    try:
        return _with_retries(attempt, max_retries, what)
    except TokenRefusedError as err:
        status = getattr(getattr(err.__cause__, "response", None), "status_code", None)
        if create_pr != "auto" or status != 403:
            raise
        logger.info("%s: the token cannot write %s; opening a pull request instead", what, repo_id)
        return _with_retries(lambda number: _propose(session, local, message, number), max_retries, f"{what} (PR)")


def _propose(session: _Session, local: dict[str, _LocalFile], message: str, attempt: int) -> PushResult:
    """Open a pull request on `session.revision` with the files that differ from it (none differ: no PR).

    A retry first looks for the pull request an earlier attempt may have opened before its connection dropped
    (open, by this user, with this title, holding these files), so that a flaky hub never gets two.
    """
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import RepositoryNotFoundError

    api = session.api
    try:
        refs = api.list_repo_refs(session.repo_id, repo_type=session.repo_type)
    except RepositoryNotFoundError as err:
        raise PushError(
            f"cannot open a pull request on {session.repo_id}: no such {session.repo_type} repo (or it is private)"
        ) from err
    branches = {b.name: b.target_commit for b in refs.branches}
    if session.revision not in branches:
        raise PushError(f"cannot open a pull request on {session.repo_id}@{session.revision}: no such branch")
    if attempt > 0:
        found = _open_pull_request(session, local, message)
        if found is not None:
            return found
    changed = _changed(local, session.remote_files(branches[session.revision]))
    if not changed:
        return session.result(None)
    info = api.create_commit(
        session.repo_id,
        [CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=f.source) for f in changed],
        commit_message=message,
        repo_type=session.repo_type,
        revision=session.revision,
        create_pr=True,
    )
    result = session.result(info.oid)
    result.url, result.pr_url, result.pr_num = info.pr_url, info.pr_url, info.pr_num
    return result


def _open_pull_request(session: _Session, local: dict[str, _LocalFile], message: str) -> PushResult | None:
    """An open pull request of this user titled `message` whose head already holds `local`, if there is one."""
    api = session.api
    me = api.whoami()["name"]
    for discussion in api.get_repo_discussions(
        session.repo_id,
        author=me,
        discussion_type="pull_request",
        discussion_status="open",
        repo_type=session.repo_type,
    ):
        if discussion.title != message:
            continue
        if _changed(local, session.remote_files(discussion.git_reference)):
            continue
        head = api.list_repo_commits(session.repo_id, repo_type=session.repo_type, revision=discussion.git_reference)
        result = session.result(head[0].commit_id)
        result.url = result.pr_url = discussion.url
        result.pr_num = discussion.num
        return result
    return None
