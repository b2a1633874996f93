"""Mirror repositories, with every branch and tag, from one Hub endpoint to another.

The use: researchers publish to a local hub on compute nodes without internet during training, then
mirror everything to huggingface.co (`babyhub hub sync --from http://127.0.0.1:8787 --to https://huggingface.co`).

Commit ids cannot be carried over (the destination makes its own), so history is *replayed*: each
source commit becomes one destination commit with the same title and message plus a trailer
`Synced-From: <source commit>`, and leaves the branch holding exactly the source commit's files.
The trailers are how a later run knows what is already there: a second run finds every source commit
mapped, every tag present, and uploads nothing. Nothing is ever deleted on the destination: branches
and tags removed at the source stay, and a tag that already exists is left alone.
"""

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.hub.publish import hub_api, hub_message
from hub_tools.repos import RepoRef, git_blob_sha1, parse_repo_ref

logger = logging.getLogger(__name__)

TRAILER = "Synced-From: "


class SyncError(BabyhubError):
    """A mirror that could not start or stopped part-way: the message names the repo and the endpoints.

    What was mirrored before the error stays on the destination, and a second run skips it.
    """


@dataclass
class SyncReport:
    repos: list[str] = field(default_factory=list)  # `models/NS/NAME`, `datasets/...`: as a repo reference reads
    commits: int = 0  # commits made on the destination
    files_uploaded: int = 0
    branches_created: int = 0
    tags_created: int = 0
    skipped_tags: list[str] = field(default_factory=list)  # tags whose commit no source branch reaches

    @property
    def changed(self) -> bool:
        return bool(self.commits or self.branches_created or self.tags_created)


def read_repo_refs(texts: list[str]) -> list[RepoRef]:
    """Parse `[TYPE/]NS/NAME` references (see `repos.parse_repo_ref`); a revision is refused: sync takes them all."""
    refs = [parse_repo_ref(text) for text in texts]
    for text, ref in zip(texts, refs, strict=True):
        if ref.revision is not None:
            raise SyncError(
                f"cannot mirror only {text!r}: a sync mirrors every branch and tag of {ref.typed_id}; "
                "name the repo without @REVISION"
            )
    return refs


def list_all_repos(api) -> list[RepoRef]:
    refs = [RepoRef(m.id, repo_type="model") for m in api.list_models()]
    refs += [RepoRef(d.id, repo_type="dataset") for d in api.list_datasets()]
    refs += [RepoRef(s.id, repo_type="space") for s in api.list_spaces()]
    return refs


def _tree(api, ref: RepoRef, revision: str) -> dict:
    from huggingface_hub.hf_api import RepoFile

    return {
        f.path: f
        for f in api.list_repo_tree(ref.repo_id, repo_type=ref.repo_type, revision=revision, recursive=True)
        if isinstance(f, RepoFile)
    }


class _RepoSync:
    def __init__(self, src, dst, ref: RepoRef, workdir: Path, report: SyncReport):
        self.src, self.dst, self.ref, self.workdir, self.report = src, dst, ref, workdir, report
        self.kw = {"repo_id": ref.repo_id, "repo_type": ref.repo_type}
        self.mapping: dict[str, str] = {}  # source commit -> destination commit

    def ensure_destination(self) -> None:
        from huggingface_hub.errors import RepositoryNotFoundError

        info = self.src.repo_info(**self.kw)
        try:
            self.dst.repo_info(**self.kw)
        except RepositoryNotFoundError:
            sdk = getattr(info, "sdk", None) or ("gradio" if self.ref.repo_type == "space" else None)
            self.dst.create_repo(private=bool(info.private), space_sdk=sdk, exist_ok=True, **self.kw)

    def read_mapping(self, dst_branches: dict[str, str]) -> None:
        """Map source commits to destination commits from the trailers on every destination branch."""
        for target_commit in dst_branches.values():
            for commit in self.dst.list_repo_commits(revision=target_commit, **self.kw):
                for line in (commit.message or "").splitlines():
                    if line.startswith(TRAILER):
                        self.mapping.setdefault(line[len(TRAILER) :].strip(), commit.commit_id)

    def _same(self, src_file, dst_file, revision: str) -> bool:
        if dst_file is None or src_file.size != dst_file.size:
            return False
        if bool(src_file.lfs) == bool(dst_file.lfs):
            return src_file.lfs.sha256 == dst_file.lfs.sha256 if src_file.lfs else src_file.blob_id == dst_file.blob_id
        # Stored as LFS on one side and inline on the other: compare the content itself.
        data = Path(self.download(src_file.path, revision)).read_bytes()
        if dst_file.lfs:
            return dst_file.lfs.sha256 == hashlib.sha256(data).hexdigest()
        return dst_file.blob_id == git_blob_sha1(data)

    def download(self, path: str, revision: str) -> str:
        return self.src.hf_hub_download(filename=path, revision=revision, cache_dir=self.workdir, **self.kw)

    def replay(self, source_commit, branch: str, dst_head: str) -> str:
        """Make `branch` hold the files of `source_commit`; returns the new destination head."""
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        src_files = _tree(self.src, self.ref, source_commit.commit_id)
        dst_files = _tree(self.dst, self.ref, dst_head)
        ops = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=self.download(path, source_commit.commit_id))
            for path, f in sorted(src_files.items())
            if not self._same(f, dst_files.get(path), source_commit.commit_id)
        ]
        ops += [CommitOperationDelete(path_in_repo=p) for p in sorted(dst_files) if p not in src_files]
        if not ops:
            return dst_head
        message = f"{source_commit.message.rstrip()}\n\n{TRAILER}{source_commit.commit_id}".lstrip()
        info = self.dst.create_commit(
            operations=ops,
            commit_message=source_commit.title or "Sync",
            commit_description=message,
            revision=branch,
            parent_commit=dst_head,
            **self.kw,
        )
        self.report.commits += 1
        self.report.files_uploaded += sum(isinstance(op, CommitOperationAdd) for op in ops)
        return info.oid

    def sync_branch(self, branch: str, dst_branches: dict[str, str]) -> None:
        """`dst_branches`: the destination's branch heads when the run began (only this call moves `branch`)."""
        history = self.src.list_repo_commits(revision=branch, **self.kw)  # newest first
        # Find where the destination already is: the newest source commit it has (the roots always match).
        pending = []
        for commit in history:
            if commit.commit_id in self.mapping:
                break
            pending.append(commit)
        if pending and pending[-1] is history[-1]:
            # The source's first commit ("initial commit") corresponds to the destination's own first commit.
            root = history[-1]
            dst_root = self.dst.list_repo_commits(revision="main", **self.kw)[-1].commit_id
            self.mapping[root.commit_id] = dst_root
            pending.pop()
            base = dst_root
        else:
            base = self.mapping[history[len(pending)].commit_id]
        if branch not in dst_branches:
            self.dst.create_branch(branch=branch, revision=base, exist_ok=True, **self.kw)
            self.report.branches_created += 1
            head = base
        else:
            head = dst_branches[branch]
        for commit in reversed(pending):  # oldest first
            head = self.replay(commit, branch, head)
            self.mapping[commit.commit_id] = head

    def sync_tags(self, src_tags: list, dst_tags: set[str]) -> None:
        for tag in src_tags:
            if tag.name in dst_tags:
                continue
            target = self.mapping.get(tag.target_commit)
            if target is None:
                self.report.skipped_tags.append(f"{self.ref}@{tag.name}")
                logger.warning("%s: tag %s points at a commit no branch reaches; not mirrored", self.ref, tag.name)
                continue
            self.dst.create_tag(tag=tag.name, revision=target, **self.kw)
            self.report.tags_created += 1

    def run(self) -> None:
        self.ensure_destination()
        # Refs are read once: syncing a branch moves only that destination branch, and creates no tag.
        src_refs, dst_refs = self.src.list_repo_refs(**self.kw), self.dst.list_repo_refs(**self.kw)
        dst_branches = {b.name: b.target_commit for b in dst_refs.branches}
        self.read_mapping(dst_branches)
        branches = [b.name for b in src_refs.branches]
        for branch in sorted(branches, key=lambda name: (name != "main", name)):
            self.sync_branch(branch, dst_branches)
        self.sync_tags(src_refs.tags, {t.name for t in dst_refs.tags})


def sync_repos(
    source: str,
    dest: str,
    *,
    repos: list[str] | None = None,
    source_token: str | None = None,
    dest_token: str | None = None,
    progress: bool = True,
) -> SyncReport:
    """Mirror repos with their branches and tags from the hub at `source` to the hub at `dest`.

    History is replayed commit by commit (see the module docstring): a second run finds every source
    commit already mapped and sends nothing, and a run that stopped part-way resumes where it stopped.

    Args:
        source: the endpoint to read from, e.g. `http://127.0.0.1:8787`.
        dest: the endpoint to write to, e.g. `https://huggingface.co`.
        repos: `[TYPE/]NS/NAME` references (`me/baby-dpo`, `datasets/me/prefs`, `spaces/me/chat`); by default
            every repo the source lists to `source_token`.
        source_token: a token that can read the source (default: HF_TOKEN or the saved login).
        dest_token: a token that can write the destination (default: HF_TOKEN or the saved login).
        progress: show a progress bar over the repos.

    Returns:
        A `SyncReport`: the repos mirrored, and the commits, files, branches and tags it created there.

    Raises:
        InvalidName: a reference in `repos` is not a repo id the Hub accepts.
        SyncError: same endpoints, a reference with a revision, or a hub that refused a request or could not be
            reached (the message names the repo and the endpoint).
    """
    from tqdm.auto import tqdm

    if source.rstrip("/") == dest.rstrip("/"):
        raise SyncError(f"the source and the destination are the same endpoint ({source}): nothing to mirror")
    refs = read_repo_refs(repos) if repos else None
    src = hub_api(source_token, source)
    dst = hub_api(dest_token, dest)  # last: uploads go to dest, so its Xet setting is the one that applies
    report = SyncReport()
    with _naming_the_failure("listing the repos", source, dest):
        refs = refs if refs is not None else list_all_repos(src)
    with tempfile.TemporaryDirectory(prefix="babyhub-sync-") as workdir:
        for ref in tqdm(refs, desc="sync", unit="repo", disable=not progress):
            with _naming_the_failure(f"mirroring {ref.typed_id}", source, dest):
                _RepoSync(src, dst, ref, Path(workdir), report).run()
            report.repos.append(ref.typed_id)
    return report


@dataclass
class SyncCheck:
    """What a mirror to the destination would be refused, found without writing anything there."""

    repos: list[str] = field(default_factory=list)  # the repos checked, `models/NS/NAME` ...
    problems: list[str] = field(default_factory=list)  # one sentence each, naming the repo (and branch, file)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_sync(
    source: str,
    dest: str,
    *,
    repos: list[str] | None = None,
    source_token: str | None = None,
    dest_token: str | None = None,
) -> SyncCheck:
    """What the destination would refuse of a mirror of `repos`, asked of the destination itself; nothing is written.

    For each repo: whether the destination token may write its namespace (its user or one of its organisations, a
    write token), whether the destination already holds it under another spelling (repo ids are case-insensitive
    there: the mirror would land in that repo), whether two source repos collide that way, whether every branch
    and tag name is one the Hub accepts, and whether the README of every branch and tag passes the destination's
    own metadata check (`/api/validate-yaml`, the rules it applies at commit time).

    Args:
        source: the endpoint to read from.
        dest: the endpoint the mirror would write to (read here, never written).
        repos: `[TYPE/]NS/NAME` references; by default every repo the source lists.
        source_token: a token that can read the source.
        dest_token: the token the mirror would write with.

    Returns:
        A `SyncCheck`: `problems` lists each refusal found (empty: `ok`).

    Raises:
        SyncError: a hub could not be reached or refused a read (the message names the repo and the endpoint).
    """
    from huggingface_hub.errors import RepositoryNotFoundError

    from hub_tools.repos import InvalidName, check_ref_name

    if source.rstrip("/") == dest.rstrip("/"):
        raise SyncError(f"the source and the destination are the same endpoint ({source}): nothing to check")
    refs = read_repo_refs(repos) if repos else None
    src, dst = hub_api(source_token, source), hub_api(dest_token, dest)
    report = SyncCheck()
    with _naming_the_failure("listing the repos", source, dest):
        refs = refs if refs is not None else list_all_repos(src)
        writer = _writer(dst)
    if writer is None:  # nothing else can be asked of the destination
        report.problems.append(f"the destination {dest} refuses the token (HTTP 401): give a valid write token")
        return report
    seen: dict[tuple[str, str], str] = {}
    for ref in refs:
        key = (ref.repo_type, ref.repo_id.lower())
        if key in seen and seen[key] != ref.repo_id:
            report.problems.append(
                f"{ref.typed_id}: the source also has {seen[key]}; repo ids are case-insensitive on the destination, "
                "so both would mirror into one repo: rename one (babyhub hub serve: HfApi.move_repo)"
            )
        seen.setdefault(key, ref.repo_id)
    for ref in refs:
        report.repos.append(ref.typed_id)
        namespace = ref.repo_id.split("/")[0]
        if not _may_write(writer, namespace):
            report.problems.append(
                f"{ref.typed_id}: the destination token ({writer['name']}, {writer['role']} token) cannot write to "
                f"the namespace {namespace} of {dest}: use a write token of {namespace} or of one of its organisations"
            )
        with _naming_the_failure(f"checking {ref.typed_id}", source, dest):
            try:
                there = dst.repo_info(ref.repo_id, repo_type=ref.repo_type)
            except RepositoryNotFoundError:
                there = None
            if there is not None and there.id != ref.repo_id:
                report.problems.append(
                    f"{ref.typed_id}: the destination has it as {there.id} (repo ids are case-insensitive there): "
                    f"the mirror would write into {there.id}; rename one so that the spellings match"
                )
            source_refs = src.list_repo_refs(ref.repo_id, repo_type=ref.repo_type)
            heads = {b.name: b.target_commit for b in source_refs.branches}
            heads.update({f"tag {t.name}": t.target_commit for t in source_refs.tags})
            for label, name in [("branch", b.name) for b in source_refs.branches] + [
                ("tag", t.name) for t in source_refs.tags
            ]:
                try:
                    check_ref_name(name)
                except InvalidName as err:
                    report.problems.append(f"{ref.typed_id}: {label} {name!r}: {err}")
            checked: dict[str, list[str]] = {}
            for where, commit in sorted(heads.items()):
                errors = checked.get(commit)
                if errors is None:
                    errors = checked[commit] = _card_errors(src, dst, ref, commit, dest_token)
                for error in errors:
                    report.problems.append(f"{ref.typed_id}@{where}: README.md: {error}")
    return report


def _writer(api) -> dict | None:
    """{name, orgs, role} of the destination token; None when the destination refuses it."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        me = api.whoami()
    except HfHubHTTPError as err:
        if err.response is not None and err.response.status_code == 401:
            return None
        raise
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role") or "unknown"
    return {"name": me.get("name", ""), "orgs": [o.get("name", "") for o in me.get("orgs") or []], "role": role}


def _may_write(writer: dict, namespace: str) -> bool:
    if writer["role"] not in ("write", "fineGrained", "unknown"):  # a fine-grained token says nothing here
        return False
    return namespace.lower() in {writer["name"].lower(), *(o.lower() for o in writer["orgs"])}


def _card_errors(src, dst, ref: RepoRef, commit: str, token: str | None) -> list[str]:
    """The destination's refusals of the README at one source commit (none without a README)."""
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    try:
        path = src.hf_hub_download(ref.repo_id, "README.md", repo_type=ref.repo_type, revision=commit)
    except EntryNotFoundError:
        return []
    content = Path(path).read_text(encoding="utf-8", errors="replace")
    response = get_session().post(
        f"{dst.endpoint.rstrip('/')}/api/validate-yaml",
        json={"content": content, "repoType": ref.repo_type},
        headers=build_hf_headers(token=token),
    )
    if response.status_code == 400:
        return [e.get("message", "") for e in response.json().get("errors") or []] or [response.text]
    hf_raise_for_status(response)
    return []


@contextmanager
def _naming_the_failure(what: str, source: str, dest: str) -> Iterator[None]:
    """Turn a hub's refusal or a lost connection inside the block into a `SyncError` naming `what` and the hub."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except BabyhubError:
        raise
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        hub = f"the source {source}" if _asked(err, source) else f"the destination {dest}"
        if status in (401, 403):
            advice = "give a token that can read the source and one that can write the destination"
        else:
            advice = "what was mirrored stays; run the same sync again to resume"
        raise SyncError(
            f"{what} from {source} to {dest}: {hub} answered HTTP {status} ({hub_message(err)}); {advice}"
        ) from err
    except (httpx2.TransportError, ConnectionError, TimeoutError) as err:
        raise SyncError(
            f"{what} from {source} to {dest}: a hub could not be reached ({type(err).__name__}: {err}); "
            "what was mirrored stays; run the same sync again to resume"
        ) from err


def _asked(err, endpoint: str) -> bool:
    """Whether the request that failed went to `endpoint`."""
    try:
        return str(err.response.request.url).startswith(endpoint.rstrip("/") + "/")
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when a response carries no request
        return False
