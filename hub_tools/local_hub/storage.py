"""On-disk storage of the local hub: content-addressed blobs, commits and refs.

Layout under the root (everything is a plain file, written atomically, so a restart loses nothing):

    blobs/ab/<sha256>              file contents, stored once whatever repo or path they appear in
    blobs/ab/<sha256>.sha1         git blob id of that content (read by tree listings and preupload)
    repos/<type>s/<ns>/<name>/
        repo.json                  id, type, private, sdk, creation date
        refs.json                  {"branches": {name: commit}, "tags": {name: commit}, "pulls": {N: commit}}
        babyhub-discussions/N.json discussions and pull requests (written by `discussions.py`, not here)
        commits/<oid>.json         parents, title, message, date, author and the full file map
    tmp/                           uploads in progress (a dropped upload never becomes a blob)

A commit stores its whole file map ({path: {sha256, size, sha1, lfs}}): repos here are small, and it
makes every revision readable with one file. One lock serialises writes: the server and the training
push queue may hit the store from several threads at once.

Repo ids, repo types and ref names follow `hub_tools.repos` (the grammar the client checks too): a name
outside it raises `repos.InvalidName`, which the app answers with a 400; other refusals are `HubError`s.
"""

import hashlib
import json
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.repos import (
    COMMIT_PATTERN,
    PR_REF_PATTERN,
    SHA256_PATTERN,
    check_ref_name,
    check_repo_id,
    check_repo_type,
    git_blob_hasher,
    git_blob_sha1,
)

DEFAULT_GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pth filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    b"*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    b"*.ckpt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.zip filter=lfs diff=lfs merge=lfs -text\n"
    b"*tfevents* filter=lfs diff=lfs merge=lfs -text\n"
)


def read_token_file(path: Path) -> list[str]:
    """The tokens of a token file, in order: the first field of each line (a line may go on to name its user, see
    `users.py`); blank lines and '#' comments skipped."""
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def check_path(path: str) -> str:
    """A file path inside a repo: relative, '/'-separated, no '..', no backslash, no NUL."""
    if not isinstance(path, str) or not path or len(path) > 1000:
        raise bad_request(f"Invalid path {path!r}")
    if path.startswith("/") or "\\" in path or "\0" in path or any(ord(c) < 32 for c in path):
        raise bad_request(f"Invalid path {path!r}: must be relative, with '/' separators and no control characters")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise bad_request(f"Invalid path {path!r}: no empty, '.' or '..' segments")
    return path


def now_iso() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path):
    with open(path) as f:
        return json.load(f)


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    dir: Path
    meta: dict

    @property
    def private(self) -> bool:
        return bool(self.meta.get("private"))

    @property
    def gated(self) -> str | bool:
        """False, "auto" or "manual" (as the Hub's `gated` setting)."""
        return self.meta.get("gated") or False


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self.lock = threading.RLock()
        for sub in ("blobs", "repos", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # Uploads interrupted by a crash are garbage: clean them on start.
        for stale in (self.root / "tmp").iterdir():
            if stale.is_file():
                stale.unlink(missing_ok=True)

    # ---- blobs ----------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        if not SHA256_PATTERN.match(sha256 or ""):
            raise bad_request(f"Invalid sha256 {sha256!r}")
        return self.root / "blobs" / sha256[:2] / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def new_tmp_file(self) -> Path:
        return self.root / "tmp" / uuid.uuid4().hex

    def adopt_blob(self, tmp: Path, sha256: str, sha1: str) -> None:
        """Move a fully written and verified temp file into the blob store (idempotent)."""
        dest = self.blob_path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_file():
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, dest)
        sha1_path = dest.with_name(dest.name + ".sha1")
        if not sha1_path.is_file():
            tmp_sha1 = sha1_path.with_name(f".{sha1_path.name}.{uuid.uuid4().hex}")
            tmp_sha1.write_text(sha1)
            os.replace(tmp_sha1, sha1_path)

    def put_bytes(self, data: bytes) -> dict:
        sha256 = hashlib.sha256(data).hexdigest()
        sha1 = git_blob_sha1(data)
        if not self.has_blob(sha256, len(data)):
            tmp = self.new_tmp_file()
            tmp.write_bytes(data)
            self.adopt_blob(tmp, sha256, sha1)
        return {"sha256": sha256, "size": len(data), "sha1": sha1}

    def blob_sha1(self, sha256: str) -> str:
        path = self.blob_path(sha256)
        sha1_path = path.with_name(path.name + ".sha1")
        if sha1_path.is_file():
            return sha1_path.read_text().strip()
        h = git_blob_hasher(path.stat().st_size)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        sha1_path.write_text(h.hexdigest())
        return h.hexdigest()

    # ---- repos ----------------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        check_repo_type(repo_type)
        check_repo_id(repo_id)
        path = (self.root / "repos" / f"{repo_type}s" / repo_id).resolve()
        if not path.is_relative_to(self.root / "repos"):
            raise bad_request(f"Invalid repo id {repo_id!r}")
        return path

    def get_repo(self, repo_type: str, repo_id: str) -> Repo | None:
        path = self._repo_dir(repo_type, repo_id)
        meta_path = path / "repo.json"
        if not meta_path.is_file():
            return None
        return Repo(repo_type, repo_id, path, _read_json(meta_path))

    def list_repos(self, repo_type: str) -> list[Repo]:
        base = self.root / "repos" / f"{repo_type}s"
        repos = []
        for meta_path in sorted(base.glob("*/*/repo.json")):
            if meta_path.parent.name.startswith("."):  # a repo being created (staging folder)
                continue
            repos.append(
                Repo(
                    repo_type,
                    f"{meta_path.parent.parent.name}/{meta_path.parent.name}",
                    meta_path.parent,
                    _read_json(meta_path),
                )
            )
        return repos

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, sdk: str | None, author: str) -> Repo:
        with self.lock:
            if self.get_repo(repo_type, repo_id) is not None:
                raise HubError(409, f"You already created this {repo_type} repo")
            path = self._repo_dir(repo_type, repo_id)
            # Like the Hub, a new repo has one first commit holding .gitattributes: branches start there.
            entry = self.put_bytes(DEFAULT_GITATTRIBUTES)
            files = {".gitattributes": {**entry, "lfs": False}}
            staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.creating")
            oid = self._write_commit(staging, [], files, "initial commit", "", author)
            meta = {"id": repo_id, "type": repo_type, "private": bool(private), "createdAt": now_iso()}
            if sdk:
                meta["sdk"] = sdk
            _write_json_atomic(staging / "refs.json", {"branches": {"main": oid}, "tags": {}})
            _write_json_atomic(staging / "repo.json", meta)
            os.replace(staging, path)  # the repo appears whole or not at all
            return Repo(repo_type, repo_id, path, meta)

    def delete_repo(self, repo: Repo) -> None:
        with self.lock:
            trash = self.root / "tmp" / f"deleted-{uuid.uuid4().hex}"
            os.replace(repo.dir, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def set_private(self, repo: Repo, private: bool) -> None:
        with self.lock:
            repo.meta["private"] = bool(private)
            _write_json_atomic(repo.dir / "repo.json", repo.meta)

    def update_meta(self, repo: Repo, changes: dict) -> None:
        """Set settings of a repo kept beside its content (`gated`; `sdk`): JSON values, None removes a key."""
        with self.lock:
            for key, value in changes.items():
                if value is None:
                    repo.meta.pop(key, None)
                else:
                    repo.meta[key] = value
            _write_json_atomic(repo.dir / "repo.json", repo.meta)

    def move_repo(self, repo: Repo, new_repo_id: str) -> Repo:
        """Rename or transfer a repo with all its history, refs and discussions; 409 when the new id is taken."""
        with self.lock:
            dest = self._repo_dir(repo.repo_type, new_repo_id)
            if dest.exists() and dest != repo.dir:
                raise HubError(409, f"A {repo.repo_type} repo {new_repo_id} already exists")
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.moving")
            os.replace(repo.dir, staging)  # a case-only rename goes through a staging name
            meta = {**repo.meta, "id": new_repo_id}
            _write_json_atomic(staging / "repo.json", meta)
            os.replace(staging, dest)
            return Repo(repo.repo_type, new_repo_id, dest, meta)

    def read_bytes(self, repo: Repo, entry: dict) -> bytes:
        """The whole content of a file entry of `repo` (small files: cards, text shown in pages, copies)."""
        return self.blob_path(entry["sha256"]).read_bytes()

    # ---- commits and refs -----------------------------------------------------------------------
    def _write_commit(
        self, repo_dir: Path, parents: list[str], files: dict, title: str, message: str, author: str
    ) -> str:
        body = {
            "parents": parents,
            "title": title,
            "message": message,
            "author": author,
            "date": now_iso(),
            "files": files,
        }
        # The id hashes content, parents and date (plus a nonce): like git, two commits never collide.
        raw = json.dumps(body, sort_keys=True).encode() + uuid.uuid4().bytes
        oid = hashlib.sha1(raw).hexdigest()
        _write_json_atomic(repo_dir / "commits" / f"{oid}.json", {"id": oid, **body})
        return oid

    def refs(self, repo: Repo) -> dict:
        return _read_json(repo.dir / "refs.json")

    def get_commit(self, repo: Repo, oid: str) -> dict | None:
        if not COMMIT_PATTERN.match(oid):
            return None
        path = repo.dir / "commits" / f"{oid}.json"
        return _read_json(path) if path.is_file() else None

    def resolve(self, repo: Repo, revision: str) -> str:
        """Branch, tag, pull request ref (`refs/pr/N`) or full commit id -> commit id; RevisionNotFound otherwise."""
        refs = self.refs(repo)
        rev = revision
        if PR_REF_PATTERN.match(rev) and rev[len("refs/pr/") :] in refs.get("pulls", {}):
            return refs["pulls"][rev[len("refs/pr/") :]]
        for prefix in ("refs/heads/", "refs/tags/"):
            if rev.startswith(prefix):
                rev = rev[len(prefix) :]
        if rev in refs["branches"]:
            return refs["branches"][rev]
        if rev in refs["tags"]:
            return refs["tags"][rev]
        if COMMIT_PATTERN.match(rev) and self.get_commit(repo, rev) is not None:
            return rev
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, repo: Repo, oid: str) -> list[dict]:
        """Commits from `oid` back to the first one, following first parents (newest first)."""
        out = []
        while oid:
            commit = self.get_commit(repo, oid)
            if commit is None:
                break
            out.append(commit)
            oid = commit["parents"][0] if commit["parents"] else None
        return out

    def commit(
        self,
        repo: Repo,
        branch: str,
        operations: list[tuple[str, str, dict | None]],
        *,
        title: str,
        message: str,
        author: str,
        parent_commit: str | None = None,
        extra_parents: list[str] | None = None,
    ) -> str:
        """Apply ("add", path, entry) / ("delete", path) / ("delete_folder", path) to a branch or a `refs/pr/N`.

        `extra_parents` are further parents after the head (a merge commit names the merged head there).
        """
        with self.lock:
            refs = self.refs(repo)
            ref_kind, name = ("pulls", branch[8:]) if PR_REF_PATTERN.match(branch) else ("branches", branch)
            if name not in refs.get(ref_kind, {}):
                raise HubError(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
            head = refs[ref_kind][name]
            if parent_commit and parent_commit != head:
                raise HubError(412, f"A commit has happened since {parent_commit}. Please refresh and try again.")
            files = dict(self.get_commit(repo, head)["files"])
            for kind, path, entry in operations:
                if kind == "add":
                    for existing in files:  # a file cannot also be a folder, and vice versa
                        if existing.startswith(path + "/") or path.startswith(existing + "/"):
                            raise bad_request(f"Cannot add {path!r}: conflicts with existing {existing!r}")
                    files[path] = entry
                elif kind == "delete":
                    if path not in files:
                        raise HubError(404, f"File to delete not found: {path}", "EntryNotFound")
                    del files[path]
                else:
                    prefix = path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"Folder to delete not found: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
            oid = self._write_commit(repo.dir, [head, *(extra_parents or [])], files, title, message, author)
            refs[ref_kind][name] = oid
            _write_json_atomic(repo.dir / "refs.json", refs)
            return oid

    def squash(self, repo: Repo, branch: str, *, title: str, message: str, author: str) -> str:
        """Replace a branch's history by one commit holding its current files (the Hub's super-squash)."""
        with self.lock:
            refs = self.refs(repo)
            if branch not in refs["branches"]:
                raise HubError(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
            files = self.get_commit(repo, refs["branches"][branch])["files"]
            oid = self._write_commit(repo.dir, [], dict(files), title, message, author)
            refs["branches"][branch] = oid
            _write_json_atomic(repo.dir / "refs.json", refs)
            return oid

    # ---- pull request refs (refs/pr/N) ---------------------------------------------------------
    def pr_refs(self, repo: Repo) -> dict[int, str]:
        """{N: head commit} of the repo's pull request refs `refs/pr/N`."""
        return {int(num): oid for num, oid in self.refs(repo).get("pulls", {}).items()}

    def create_pr_ref(self, repo: Repo, num: int, target: str) -> None:
        """Create `refs/pr/{num}` at commit `target` (a pull request's branch); 409 when it exists."""
        with self.lock:
            refs = self.refs(repo)
            pulls = refs.setdefault("pulls", {})
            if str(num) in pulls:
                raise HubError(409, f"Reference refs/pr/{num} already exists")
            pulls[str(num)] = target
            _write_json_atomic(repo.dir / "refs.json", refs)

    def create_ref(self, repo: Repo, kind: str, name: str, target: str) -> None:
        with self.lock:
            check_ref_name(name)
            refs = self.refs(repo)
            if name in refs["branches"] or name in refs["tags"]:
                raise HubError(409, f"Reference {name} already exists")
            refs[kind][name] = target
            _write_json_atomic(repo.dir / "refs.json", refs)

    def delete_ref(self, repo: Repo, kind: str, name: str) -> None:
        with self.lock:
            refs = self.refs(repo)
            if name not in refs[kind]:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            if kind == "branches" and name == "main":
                raise bad_request("Cannot delete the main branch")
            del refs[kind][name]
            _write_json_atomic(repo.dir / "refs.json", refs)
