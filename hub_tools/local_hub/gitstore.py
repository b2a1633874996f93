"""The local hub's repos as bare git repositories, with LFS content in a content-addressed store.

The local hub's store since issue 14 (it replaced the JSON store of `storage.py`). Handlers read through the fast
calls: `resolve`, `tree_view(repo, commit)` (listings, paths-info, file lookups), `walk`/`history`, `read_file`,
`read_blob`, `commit_info`. The JSON store's interface is kept for code written against it (`get_commit(...)
["files"]` as a lazy mapping, `blob_path`, `put_bytes`, `has_blob`): it works, but costs more per file (a plain
file's sha256 is hashed on first use). Layout under the root, created 0700 so that a private repo is nobody else's
to read, whatever the umask:

    FORMAT                              "babyhub-git 1" (a root without it is migrated on open: migrate.py)
    owner.lock                          flock held by the process that owns the root (it cleans leftovers at start)
    upload.key                          0600: the key that signs LFS transfer grants, so they survive a restart
    lfs/objects/ab/cd/<sha256>          LFS content, stored once whatever repo or path it appears in
    lfs/objects/ab/cd/<sha256>.sha1     the git blob id of that content (the old API reports it)
    repos/<type>s/<ns>/<name>.git/      a bare git repository (objects/pack, refs/heads, refs/tags, HEAD, config)
        babyhub.json                    id, type, private, sdk, createdAt
        babyhub-ids.json                only in migrated repos: the old commit ids -> git commit ids
    tmp/                                uploads and staging folders in flight; emptied at start
    cache/blobs/<sha256>                plain git blobs written out for callers of the old `blob_path`

Why git, and why this shape:
- A commit is a git commit: its tree shares every unchanged folder with its parent, so what a commit adds is
  proportional to the change (the old store wrote the whole file map per commit: quadratic growth).
- Files the Hub would put in LFS (`lfs.LfsRule`: the LFS extensions, over 10 MB, or a `.gitattributes`
  `filter=lfs` line) are pointer files in git and content in `lfs/objects`, exactly as on the Hub, so a tree
  listing's `oid` and `lfs` fields are the real ones and `git clone` + `git lfs` get the files back.
- Every commit writes ONE pack (its blobs, the folders it touched, the commit), fsynced, then moves the branch
  with a compare-and-swap, fsynced, then fsyncs the folder: blob -> commit -> ref, so a crash never leaves a
  ref pointing at something missing. Packs are merged when there are more than `MAX_PACKS`.
- Parsed trees and commits are cached by object id (immutable: the cache never goes stale, and is shared by all
  repos); a tree's file listing and folder set are built once per tree.
- dulwich, not pygit2: measured in `benchmarks/git_backends.py` (a durable 10,000-file commit writes one fsynced
  pack instead of 10,000 fsynced loose objects; a pure-Python fallback wheel on every platform; and a git
  server side for smart HTTP in githttp.py).

Beside it: `gittrees` (tree listings, `FileMap`, the tree editor), `gitplumbing` (packs, commits, durable files,
leftovers), `lfs` (the LFS rule and pointers), `githttp` (git over HTTP), `migrate`, `maintenance` (fsck, gc).

Thread safety: dulwich's pack readers are not thread-safe, so every object read of a repo holds that repo's
lock (reads are short: the caches serve most of them). Writes also take a per-repo file lock, so `babyhub hub
gc` in another process never races a commit.
"""

from __future__ import annotations

import fcntl
import hashlib
import heapq
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.objects import Blob, Commit, Tree, parse_tree
from dulwich.repo import Repo as DulwichRepo

from hub_tools.local_hub import lfs
from hub_tools.local_hub.cards import InvalidMetadata, read_front_matter
from hub_tools.local_hub.errors import HubError, bad_request
from hub_tools.local_hub.gitplumbing import (
    BLOBINFO,
    fsync_dir,
    fsync_ref,
    fsync_tree,
    identity_user,
    init_bare,
    iso_date,
    make_root,
    merge_packs,
    needs_migration,
    new_commit,
    parse_message,
    read_blobinfo,
    read_range,
    real_dirs,
    ref_path_clash,
    remove_leftovers,
    write_atomic,
    write_json_atomic,
    write_objects,
)
from hub_tools.local_hub.gittrees import (
    MODE_FILE,
    MODE_GITLINK,
    MODE_TREE,
    FileEntry,
    FileMap,
    FileMapEntry,
    TreeEditor,
    TreeView,
)
from hub_tools.local_hub.storage import check_path, is_control
from hub_tools.repos import (
    COMMIT_PATTERN,
    PR_REF_PATTERN,
    REPO_TYPES,
    SHA256_PATTERN,
    check_ref_name,
    check_repo_id,
    git_blob_hasher,
    git_blob_sha1,
)

logger = logging.getLogger("babyhub.local_hub.gitstore")

FORMAT = "babyhub-git 1"
MAX_PACKS = 16  # more packs than this in a repo and the small ones are merged (each lookup probes every pack)
TREE_CACHE_ENTRIES = 400_000  # tree entries kept parsed (all trees together), ~60 MB
BLOB_INFO_CACHE = 500_000
FLAT_CACHE_ENTRIES = 400_000
_OBJ_COMMIT, _OBJ_TREE, _OBJ_BLOB, _OBJ_TAG = 1, 2, 3, 4


# ---- small pure helpers ------------------------------------------------------------------------------------------
class _LRU:
    """A dict that forgets the least recently used keys once the total weight passes `max_weight`."""

    def __init__(self, max_weight: int):
        self.max_weight = max_weight
        self.weight = 0
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            self._data.move_to_end(key)
            return item[0]

    def put(self, key, value, weight: int = 1):
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.weight -= old[1]
            self._data[key] = (value, weight)
            self.weight += weight
            while self.weight > self.max_weight and len(self._data) > 1:
                _, (_, w) = self._data.popitem(last=False)
                self.weight -= w
        return value


# ---- what the store returns ----------------------------------------------------------------------------------------
@dataclass
class Repo:
    """A repo: its type, id, bare git folder and metadata (`babyhub.json`). Same fields as `storage.Repo`."""

    repo_type: str
    repo_id: str
    dir: Path
    meta: dict

    @property
    def private(self) -> bool:
        return self.meta.get("private") is True

    @property
    def gated(self) -> str | bool:
        """False, "auto" or "manual" (as the Hub's `gated` setting)."""
        return self.meta.get("gated") or False


@dataclass(frozen=True)
class CommitInfo:
    """A parsed commit. `date` in the Hub's format; `title`/`message` as the commit endpoint received them."""

    id: str
    tree: str
    parents: tuple[str, ...]
    title: str
    message: str
    author: str
    date: str
    commit_time: int = 0  # committer time (POSIX): what `git log` orders by

    def to_json(self) -> dict:
        """The item of the Hub's commits listing."""
        return {
            "id": self.id,
            "authors": [{"user": self.author}],
            "date": self.date,
            "title": self.title,
            "message": self.message,
            "parents": list(self.parents),
        }


@dataclass(frozen=True)
class RefUpdate:
    """One ref change of a `git push`: full ref name, old and new commit id (40 zeros = none)."""

    ref: str
    old: str
    new: str


ZERO = "0" * 40


# ---- one repo's git objects ----------------------------------------------------------------------------------------
@dataclass
class _Handle:
    """An open bare repository: the dulwich object, its read lock, its cached refs and its write lock file."""

    path: Path
    git: DulwichRepo
    lock: threading.RLock = field(default_factory=threading.RLock)
    write_mutex: threading.Lock = field(default_factory=threading.Lock)
    refs_cache: dict | None = None
    migrated_ids: dict | None = None
    blobinfo_loaded: bool = False

    def read_raw(self, oid: str) -> tuple[int, bytes]:
        """(type number, content) of an object; KeyError when the repo does not have it."""
        with self.lock:
            return self.git.object_store.get_raw(oid.encode())

    def has(self, oid: str) -> bool:
        with self.lock:
            return oid.encode() in self.git.object_store

    @contextmanager
    def writing(self):
        """The repo's write lock: in this process (a mutex) and against other processes (flock on a file)."""
        with self.write_mutex:
            fd = os.open(self.path / "babyhub.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def close(self) -> None:
        with self.lock:
            self.git.close()


class GitStore:
    """Bare git repositories under `root`, with the interface of `storage.Store` (see the module docstring).

    Args:
        root: the store's folder (created 0700 if missing). A root written by the old store is migrated first.
        migrate: migrate an old-format root on open (else raise, naming `babyhub hub migrate`).
        own: take the root's owner lock and remove leftovers of a crash (staging folders, temp files, stale git
            lock files). A second process (`hub fsck`, `hub gc` next to a running server) opens with own=False.
    """

    def __init__(self, root: Path | str, *, migrate: bool = True, own: bool = True):
        self.root = Path(root).resolve()
        self.lock = threading.RLock()  # the pool and repo creation/deletion (what storage.Store.lock guarded)
        self._handles: dict[Path, _Handle] = {}
        self._trees = _LRU(TREE_CACHE_ENTRIES)
        self._commits = _LRU(100_000)
        self._blob_infos = _LRU(BLOB_INFO_CACHE)
        self._flat = _LRU(FLAT_CACHE_ENTRIES)
        self._sha256_of_blob = _LRU(BLOB_INFO_CACHE)
        self._plain_blob_home: dict[str, tuple[Path, str]] = {}  # sha256 -> (repo dir, blob id), for blob_path
        self._lfs_sets: dict[Path, tuple[tuple, frozenset]] = {}
        self._tree_lfs_cache = _LRU(TREE_CACHE_ENTRIES)
        self._owner_fd: int | None = None
        make_root(self.root)
        if needs_migration(self.root):
            if not migrate:
                raise HubError(
                    500,
                    f"{self.root} holds a hub written by an older babyhub: run `babyhub hub migrate --root "
                    f"{self.root}` (or open it with migrate=True)",
                )
            from hub_tools.local_hub.migrate import migrate_root

            migrate_root(self.root)
        for sub in ("repos", "tmp", "lfs/objects", "cache/blobs"):
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        format_file = self.root / "FORMAT"
        if not format_file.is_file():
            write_atomic(format_file, (FORMAT + "\n").encode(), 0o644)
        if own and self._take_ownership():
            remove_leftovers(self.root)

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def _take_ownership(self) -> bool:
        fd = os.open(self.root / "owner.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            logger.warning("%s is owned by another process: leftovers are not cleaned", self.root)
            return False
        self._owner_fd = fd
        return True

    def close(self) -> None:
        """Close every open repository and release the owner lock (the store is unusable afterwards)."""
        with self.lock:
            for handle in self._handles.values():
                handle.close()
            self._handles.clear()
            if self._owner_fd is not None:
                os.close(self._owner_fd)
                self._owner_fd = None

    def __enter__(self) -> GitStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def signing_key(self) -> bytes:
        """The key that signs LFS transfer grants: made once, kept 0600 under the root, so grants survive restarts."""
        path = self.root / "upload.key"
        with self.lock:
            if not path.is_file():
                write_atomic(path, secrets.token_hex(32).encode(), 0o600)
            return bytes.fromhex(path.read_text().strip())

    # ---- LFS objects (the content-addressed pool; `blob` in the names of the old API) ---------------------------
    def lfs_path(self, sha256: str) -> Path:
        """Where the LFS object `sha256` lives (whether or not it is there)."""
        if not isinstance(sha256, str) or not SHA256_PATTERN.match(sha256):
            raise bad_request(f"Invalid sha256 {sha256!r}")
        return self.root / "lfs" / "objects" / sha256[:2] / sha256[2:4] / sha256

    def has_lfs_object(self, sha256: str, size: int | None = None) -> bool:
        try:
            actual = self.lfs_path(sha256).stat().st_size
        except FileNotFoundError:
            return False
        return size is None or actual == size

    def freshen_lfs_object(self, sha256: str) -> None:
        """Mark an LFS object as just used, so that a `gc` running now does not take it (it spares young objects)."""
        try:
            os.utime(self.lfs_path(sha256))
        except FileNotFoundError:
            pass

    def new_tmp_file(self) -> Path:
        return self.root / "tmp" / uuid.uuid4().hex

    def adopt_lfs_object(self, tmp: Path, sha256: str, sha1: str | None = None) -> None:
        """Move a fully written and verified temp file into the pool (idempotent), fsynced before it appears."""
        dest = self.lfs_path(sha256)
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if dest.is_file():
            tmp.unlink(missing_ok=True)
        else:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, dest)
            fsync_dir(dest.parent)
        if sha1 and not dest.with_name(dest.name + ".sha1").is_file():
            write_atomic(dest.with_name(dest.name + ".sha1"), sha1.encode())

    def put_lfs_bytes(self, data: bytes) -> lfs.Pointer:
        """Store `data` in the pool; its pointer."""
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.has_lfs_object(sha256, len(data)):
            tmp = self.new_tmp_file()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.adopt_lfs_object(tmp, sha256, git_blob_sha1(data))
        return lfs.Pointer(sha256, len(data))

    # The JSON store's names, for code written against it (see the module docstring).
    def blob_path(self, sha256: str) -> Path:
        """storage.Store.blob_path: a readable file with content `sha256` (LFS object, or a plain blob written out).

        Plain git blobs are not files; the old server reads README and small files through this path, so a plain
        blob whose sha256 a `files` entry reported is written to `cache/blobs` on first use. New code: `read_file`.
        """
        path = self.lfs_path(sha256)
        if path.is_file():
            return path
        home = self._plain_blob_home.get(sha256)
        if home is None:
            return path
        cached = self.root / "cache" / "blobs" / sha256
        if not cached.is_file():
            repo_dir, oid = home
            data = self._handle_at(repo_dir).read_raw(oid)[1]
            write_atomic(cached, data)
        return cached

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        return self.has_lfs_object(sha256, size)

    def adopt_blob(self, tmp: Path, sha256: str, sha1: str) -> None:
        self.adopt_lfs_object(tmp, sha256, sha1)

    def put_bytes(self, data: bytes) -> dict:
        """storage.Store.put_bytes: stage `data` (in the pool) for a commit; {sha256, size, sha1}.

        The commit decides whether the file becomes a plain git blob or stays an LFS object; a staged file no
        commit kept is removed by `gc` after its grace period.
        """
        pointer = self.put_lfs_bytes(data)
        return {"sha256": pointer.oid, "size": pointer.size, "sha1": git_blob_sha1(data)}

    def blob_sha1(self, sha256: str) -> str:
        """The git blob id of LFS object `sha256`'s content (from its .sha1 file, else hashed once)."""
        path = self.lfs_path(sha256)
        sha1_path = path.with_name(path.name + ".sha1")
        if sha1_path.is_file():
            return sha1_path.read_text().strip()
        h = git_blob_hasher(path.stat().st_size)
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        write_atomic(sha1_path, h.hexdigest().encode())
        return h.hexdigest()

    # ---- repos -------------------------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise bad_request(f"Invalid repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
        check_repo_id(repo_id)
        namespace, name = repo_id.split("/")
        path = self.root / "repos" / f"{repo_type}s" / namespace / f"{name}.git"
        if path.parent.is_symlink() or path.is_symlink():  # never follow a link out of the root
            raise HubError(404, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")
        return path

    def get_repo(self, repo_type: str, repo_id: str) -> Repo | None:
        path = self.repo_dir(repo_type, repo_id)
        try:
            meta = json.loads((path / "babyhub.json").read_bytes())
        except FileNotFoundError:
            return None
        return Repo(repo_type, repo_id, path, meta)

    def list_repos(self, repo_type: str) -> list[Repo]:
        """Every repo of a type, by id. Symlinks and dot-folders (staging) are skipped: nothing outside the root."""
        base = self.root / "repos" / f"{repo_type}s"
        repos = []
        for ns in real_dirs(base):
            for entry in real_dirs(Path(ns.path)):
                if not entry.name.endswith(".git"):
                    continue
                try:
                    meta = json.loads((Path(entry.path) / "babyhub.json").read_bytes())
                except (FileNotFoundError, ValueError):
                    continue
                repos.append(Repo(repo_type, f"{ns.name}/{entry.name[:-4]}", Path(entry.path), meta))
        return sorted(repos, key=lambda r: r.repo_id)

    def create_repo(self, repo_type: str, repo_id: str, *, private: bool, sdk: str | None, author: str) -> Repo:
        """A new repo whose `main` holds one commit with the default `.gitattributes`, as on the Hub.

        Built in a staging folder and renamed into place: it appears whole or not at all.
        """
        with self.lock:
            path = self.repo_dir(repo_type, repo_id)
            if (path / "babyhub.json").is_file():
                raise HubError(409, f"You already created this {repo_type} repo")
            meta = {"id": repo_id, "type": repo_type, "private": bool(private), "createdAt": iso_date(time.time())}
            if sdk:
                meta["sdk"] = sdk
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.creating")
            try:
                git = init_bare(staging)
                try:
                    blob = Blob.from_string(lfs.DEFAULT_GITATTRIBUTES)
                    tree = Tree()
                    tree.add(b".gitattributes", MODE_FILE, blob.id)
                    commit = new_commit(tree.id, [], "initial commit", "", author, time.time())
                    write_objects(git, [blob, tree, commit])
                    git.refs.set_if_equals(b"refs/heads/main", None, commit.id)
                finally:
                    git.close()
                write_json_atomic(staging / "babyhub.json", meta)
                fsync_tree(staging)
                os.replace(staging, path)
                fsync_dir(path.parent)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            return Repo(repo_type, repo_id, path, meta)

    def delete_repo(self, repo: Repo) -> None:
        """Remove a repo (its LFS objects stay in the pool until `gc` finds no repo using them)."""
        with self.lock:
            handle = self._handles.pop(repo.dir, None)
            if handle is not None:
                handle.close()
            trash = self.root / "tmp" / f"deleted-{uuid.uuid4().hex}"
            os.replace(repo.dir, trash)
            fsync_dir(repo.dir.parent)
            shutil.rmtree(trash, ignore_errors=True)

    def set_private(self, repo: Repo, private: bool) -> None:
        """Make a repo private or public; only a bool is a visibility (`None`, 0 or "" would be read as public)."""
        if not isinstance(private, bool):
            raise bad_request(f"'private' must be true or false, not {private!r}")
        self.update_meta(repo, {"private": private})

    def update_meta(self, repo: Repo, changes: dict) -> None:
        """Set settings kept beside a repo's content (`private`, `gated`, `sdk`): JSON values, None removes a key."""
        with self.lock:
            meta = json.loads((repo.dir / "babyhub.json").read_bytes())
            for key, value in changes.items():
                if value is None:
                    meta.pop(key, None)
                else:
                    meta[key] = value
            write_json_atomic(repo.dir / "babyhub.json", meta)
            repo.meta.clear()
            repo.meta.update(meta)

    def move_repo(self, repo: Repo, new_repo_id: str) -> Repo:
        """Rename or transfer a repo with all its history and refs; 409 when the new id is taken."""
        with self.lock:
            dest = self.repo_dir(repo.repo_type, new_repo_id)
            if dest.exists() and dest != repo.dir:
                raise HubError(409, f"A {repo.repo_type} repo {new_repo_id} already exists")
            handle = self._handles.pop(repo.dir, None)
            if handle is not None:
                handle.close()
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            staging = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.moving")
            os.replace(repo.dir, staging)  # a case-only rename goes through a staging name
            meta = {**repo.meta, "id": new_repo_id}
            write_json_atomic(staging / "babyhub.json", meta)
            os.replace(staging, dest)
            fsync_dir(dest.parent)
            if repo.dir.parent != dest.parent:
                fsync_dir(repo.dir.parent)
            return Repo(repo.repo_type, new_repo_id, dest, meta)

    # ---- open repositories ---------------------------------------------------------------------------------------
    def _handle(self, repo: Repo) -> _Handle:
        return self._handle_at(repo.dir)

    def _handle_at(self, path: Path) -> _Handle:
        handle = self._handles.get(path)
        if handle is not None:
            return handle
        with self.lock:
            handle = self._handles.get(path)
            if handle is None:
                if not (path / "babyhub.json").is_file():
                    raise HubError(404, "Repository not found (deleted)", "RepoNotFound")
                git = DulwichRepo(str(path))
                git.object_store.fsync_object_files = True
                handle = self._handles[path] = _Handle(path, git)
        return handle

    # ---- objects, through the caches -----------------------------------------------------------------------------
    def _tree(self, handle: _Handle, oid: str) -> dict[str, tuple[int, str]]:
        """{name: (mode, oid)} of tree `oid`, in git order; parsed once per store (trees never change)."""
        tree = self._trees.get(oid)
        if tree is None:
            kind, raw = _read(handle, oid)
            if kind != _OBJ_TREE:
                raise _corrupt(handle, f"object {oid} is not a tree")
            tree = {
                name.decode("utf-8", "surrogateescape"): (mode, sha.decode())
                for name, mode, sha in parse_tree(raw, 20)
            }
            self._trees.put(oid, tree, len(tree) + 1)
        return tree

    def commit_info(self, repo: Repo, oid: str) -> CommitInfo | None:
        """The parsed commit `oid` of `repo`, or None when the repo has no such commit."""
        if not isinstance(oid, str) or not COMMIT_PATTERN.match(oid):
            return None
        handle = self._handle(repo)
        if not handle.has(oid):  # the caches are shared by all repos: an id parsed elsewhere is not this repo's
            return None
        try:
            return self._commit(handle, oid)
        except KeyError:
            return None

    def _commit(self, handle: _Handle, oid: str) -> CommitInfo:
        info = self._commits.get(oid)
        if info is not None:
            return info
        kind, raw = handle.read_raw(oid)
        if kind != _OBJ_COMMIT:
            raise KeyError(oid)
        commit = Commit.from_raw_string(_OBJ_COMMIT, raw)
        title, message = parse_message(commit.message)
        info = CommitInfo(
            id=oid,
            tree=commit.tree.decode(),
            parents=tuple(p.decode() for p in commit.parents),
            title=title,
            message=message,
            author=identity_user(commit.author),
            date=iso_date(commit.author_time),
            commit_time=commit.commit_time,
        )
        return self._commits.put(oid, info)

    def _blob_info(self, handle: _Handle, oid: str) -> tuple[int, lfs.Pointer | None]:
        """(content size, LFS pointer or None) of blob `oid`: a pointer file stands for its LFS object.

        Listings need this for every file; reading each blob for it made a cold 15,000-file listing take seconds.
        So it is kept per repo in `babyhub-blobinfo` (written when a commit or a push brings the blob, or the
        first time it is read) and loaded once per process: a listing reads trees, never blobs.
        """
        info = self._blob_infos.get(oid)
        if info is None and not handle.blobinfo_loaded:
            self._load_blobinfo(handle)
            info = self._blob_infos.get(oid)
        if info is None:
            kind, data = _read(handle, oid)
            info = self._remember_blobs(handle, [(oid, data)])[0]
        return info

    def _remember_blobs(self, handle: _Handle, blobs: list) -> list[tuple[int, lfs.Pointer | None]]:
        """Cache and append to the repo's blob-info file the (size, pointer) of blobs (Blob or (oid, data))."""
        infos, records = [], []
        for blob in blobs:
            oid, data = (blob.id.decode(), blob.as_raw_string()) if isinstance(blob, Blob) else blob
            pointer = lfs.parse_pointer(data)
            info = (pointer.size if pointer else len(data), pointer)
            self._blob_infos.put(oid, info)
            infos.append(info)
            records.append(BLOBINFO.pack(bytes.fromhex(oid), info[0], bytes.fromhex(pointer.oid) if pointer else b""))
        try:
            fd = os.open(handle.path / "babyhub-blobinfo", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"".join(records))
            finally:
                os.close(fd)
        except OSError as err:  # a cache: the store works without it
            logger.warning("cannot write the blob-info cache of %s: %s", handle.path, err)
        return infos

    def _load_blobinfo(self, handle: _Handle) -> None:
        with handle.lock:
            if handle.blobinfo_loaded:
                return
            for oid, info in read_blobinfo(handle.path / "babyhub-blobinfo").items():
                self._blob_infos.put(oid, info)
            handle.blobinfo_loaded = True

    # ---- refs ----------------------------------------------------------------------------------------------------
    def refs(self, repo: Repo) -> dict:
        """{"branches": {name: commit}, "tags": {name: commit}, "pulls": {"N": commit}} (annotated tags peeled).

        `pulls` are the pull request refs `refs/pr/N`, as on the Hub (git fetches them like any ref).
        """
        handle = self._handle(repo)
        cached = handle.refs_cache
        if cached is None:
            cached = handle.refs_cache = self._read_refs(handle)
        return {kind: dict(names) for kind, names in cached.items()}

    def _read_refs(self, handle: _Handle) -> dict:
        out = {"branches": {}, "tags": {}, "pulls": {}}
        with handle.lock:
            raw = handle.git.refs.as_dict()
        for ref, sha in raw.items():
            ref = ref.decode("utf-8", "replace")
            for prefix, kind in (("refs/heads/", "branches"), ("refs/tags/", "tags"), ("refs/pr/", "pulls")):
                if ref.startswith(prefix):
                    out[kind][ref[len(prefix) :]] = self._peel(handle, sha.decode())
        return out

    def _peel(self, handle: _Handle, oid: str) -> str:
        for _ in range(10):
            try:
                kind, raw = handle.read_raw(oid)
            except KeyError:
                return oid
            if kind != _OBJ_TAG:
                return oid
            oid = re.match(rb"object ([0-9a-f]{40})", raw).group(1).decode()
        return oid

    def resolve(self, repo: Repo, revision: str) -> str:
        """Branch, tag, `refs/pr/N` or full commit id (or a pre-migration id) -> commit id, else RevisionNotFound."""
        refs = self.refs(repo)
        rev = revision
        if isinstance(rev, str) and PR_REF_PATTERN.match(rev) and rev[len("refs/pr/") :] in refs["pulls"]:
            return refs["pulls"][rev[len("refs/pr/") :]]
        for prefix in ("refs/heads/", "refs/tags/"):
            if isinstance(rev, str) and rev.startswith(prefix):
                rev = rev[len(prefix) :]
        if rev in refs["branches"]:
            return refs["branches"][rev]
        if rev in refs["tags"]:
            return refs["tags"][rev]
        if isinstance(rev, str) and COMMIT_PATTERN.match(rev):
            if self.commit_info(repo, rev) is not None:
                return rev
            mapped = self._migrated_ids(repo).get(rev)
            if mapped:
                return mapped
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _migrated_ids(self, repo: Repo) -> dict:
        handle = self._handle(repo)
        if handle.migrated_ids is None:
            try:
                handle.migrated_ids = json.loads((repo.dir / "babyhub-ids.json").read_bytes())
            except FileNotFoundError:
                handle.migrated_ids = {}
        return handle.migrated_ids

    def create_ref(self, repo: Repo, kind: str, name: str, target: str) -> None:
        """Create branch or tag `name` at commit `target`; 409 when a branch or tag of that name exists."""
        check_ref_name(name)
        prefix = {"branches": "refs/heads/", "tags": "refs/tags/"}[kind]
        handle = self._handle(repo)
        if self.commit_info(repo, target) is None:
            raise HubError(404, f"Invalid rev id: {target}", "RevisionNotFound")
        with handle.writing():
            refs = handle.refs_cache = self._read_refs(handle)
            if name in refs["branches"] or name in refs["tags"]:
                raise HubError(409, f"Reference {name} already exists")
            clash = ref_path_clash(name, [*refs["branches"], *refs["tags"]])
            if clash:
                raise HubError(409, f"Reference {name} conflicts with existing reference {clash} (git refs are paths)")
            try:
                with handle.lock:
                    ok = handle.git.refs.add_if_new(f"{prefix}{name}".encode(), target.encode())
            finally:
                handle.refs_cache = None
            if not ok:
                raise HubError(409, f"Reference {name} already exists")
            fsync_ref(repo.dir, f"{prefix}{name}")

    def delete_ref(self, repo: Repo, kind: str, name: str) -> None:
        handle = self._handle(repo)
        prefix = {"branches": "refs/heads/", "tags": "refs/tags/"}[kind]
        with handle.writing():
            refs = handle.refs_cache = self._read_refs(handle)
            if name not in refs[kind]:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            if kind == "branches" and name == "main":
                raise bad_request("Cannot delete the main branch")
            try:
                with handle.lock:
                    handle.git.refs.remove_if_equals(f"{prefix}{name}".encode(), None)
            finally:
                handle.refs_cache = None
            fsync_ref(repo.dir, f"{prefix}{name}")

    def pr_refs(self, repo: Repo) -> dict[int, str]:
        """{N: head commit} of the repo's pull request refs `refs/pr/N`."""
        return {int(num): oid for num, oid in self.refs(repo)["pulls"].items() if num.isdigit()}

    def create_pr_ref(self, repo: Repo, num: int, target: str) -> None:
        """Create `refs/pr/{num}` at commit `target` (a pull request's branch); 409 when it exists."""
        if not isinstance(num, int) or num <= 0:
            raise bad_request(f"Invalid pull request number {num!r}")
        handle = self._handle(repo)
        if self.commit_info(repo, target) is None:
            raise HubError(404, f"Invalid rev id: {target}", "RevisionNotFound")
        with handle.writing():
            try:
                with handle.lock:
                    ok = handle.git.refs.add_if_new(f"refs/pr/{num}".encode(), target.encode())
            finally:
                handle.refs_cache = None
            if not ok:
                raise HubError(409, f"Reference refs/pr/{num} already exists")
            fsync_ref(repo.dir, f"refs/pr/{num}")

    def squash(self, repo: Repo, branch: str, *, title: str, message: str, author: str) -> str:
        """Replace a branch's history by one commit holding its current files (the Hub's super-squash); its id."""
        handle = self._handle(repo)
        with handle.writing():
            handle.refs_cache = None
            branches = self.refs(repo)["branches"]
            if branch not in branches:
                raise HubError(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
            head = branches[branch]
            commit = new_commit(self._commit(handle, head).tree, [], title, message, author, time.time())
            write_objects(handle.git, [commit], lock=handle.lock)
            self._move_ref(handle, f"refs/heads/{branch}", head, commit.id.decode())
            return commit.id.decode()

    # ---- reading commits and trees -------------------------------------------------------------------------------
    def get_commit(self, repo: Repo, oid: str) -> dict | None:
        """storage.Store.get_commit: {id, parents, title, message, author, date, files}; None when unknown.

        `files` is a read-only mapping {path: {sha256, size, sha1, lfs}} that reads the tree lazily (looking a
        path up walks only its folders), so the old handlers keep working; new code uses `tree_view`.
        """
        info = self.commit_info(repo, oid)
        if info is None:
            return None
        return {
            "id": info.id,
            "parents": list(info.parents),
            "title": info.title,
            "message": info.message,
            "author": info.author,
            "date": info.date,
            "files": FileMap(self, repo, info.tree),
        }

    def history(self, repo: Repo, oid: str) -> list[dict]:
        """Every commit `oid` reaches, in `git log`'s order, without `files` (id, parents, title, message, ...).

        `git log` walks a queue ordered by committer date, newest first, where commits of the same date keep the
        order they were queued in (parents in their order, as each commit is shown); the same walk here, so a
        clone's `git log` and the Hub's commit listing agree, merges and same-second commits included.
        """
        return [
            {
                "id": info.id,
                "parents": list(info.parents),
                "title": info.title,
                "message": info.message,
                "author": info.author,
                "date": info.date,
            }
            for info in self.walk(repo, oid)
        ]

    def walk(self, repo: Repo, oid: str) -> Iterator[CommitInfo]:
        """The commits `oid` reaches, parsed, in `git log`'s order (see `history`); a missing parent ends a line."""
        handle = self._handle(repo)
        order = itertools.count()
        queue: list = []
        seen = {oid}

        def push(commit: str) -> None:
            try:
                info = self._commit(handle, commit)
            except KeyError:  # a shallow or damaged history: nothing behind it
                return
            heapq.heappush(queue, (-info.commit_time, next(order), info))

        push(oid)
        while queue:
            info = heapq.heappop(queue)[2]
            yield info
            for parent in info.parents:
                if parent not in seen:
                    seen.add(parent)
                    push(parent)

    def tree_view(self, repo: Repo, commit: str) -> TreeView:
        """The file tree of commit `commit` (an id: resolve a revision first)."""
        info = self.commit_info(repo, commit)
        if info is None:
            raise HubError(404, f"Invalid rev id: {commit}", "RevisionNotFound")
        return TreeView(self, self._handle(repo), info.tree)

    def read_file(self, repo: Repo, entry: FileEntry, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The bytes of `entry` from `start` (`length` of them, or to the end), in chunks of at most 1 MiB."""
        size = entry.size
        length = size - start if length is None else length
        if entry.lfs:
            return read_range(self.lfs_path(entry.lfs.oid), start, length)
        data = _read(self._handle(repo), entry.oid)[1]
        return iter([data[start : start + length]] if length else [])

    def read_blob(self, repo: Repo, oid: str) -> bytes:
        """The content of git blob `oid` (a pointer file's text, for an LFS file)."""
        kind, data = _read(self._handle(repo), oid)
        if kind != _OBJ_BLOB:
            raise _corrupt(self._handle(repo), f"object {oid} is not a blob")
        return data

    def read_bytes(self, repo: Repo, entry) -> bytes:
        """The whole content of a file (a `FileEntry`, or an entry of `get_commit()["files"]`): small files only."""
        if isinstance(entry, FileMapEntry):
            entry = entry.entry
        if isinstance(entry, FileEntry):
            return b"".join(self.read_file(repo, entry))
        if entry.get("lfs"):
            return self.lfs_path(entry["sha256"]).read_bytes()
        return self.blob_path(entry["sha256"]).read_bytes()

    def _sha256_of(self, handle: _Handle, oid: str) -> str:
        sha = self._sha256_of_blob.get(oid)
        if sha is None:
            sha = hashlib.sha256(_read(handle, oid)[1]).hexdigest()
            self._sha256_of_blob.put(oid, sha)
        self._plain_blob_home.setdefault(sha, (handle.path, oid))
        return sha

    # ---- committing --------------------------------------------------------------------------------------------
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
        """Apply operations to `branch` (or a pull request's `refs/pr/N`) as one git commit; its id.

        Operations (storage.Store's shape): ("add", path, entry), ("delete", path, None), ("delete_folder", path,
        None). An add's entry is {"content": bytes} (new code: no staging), {"sha256", "size", "lfs": True} (an
        uploaded LFS object) or {"sha256", "size", "lfs": False} (bytes staged by `put_bytes`). Whether a file
        is stored as a plain blob or an LFS pointer is `lfs.LfsRule`'s decision; an LFS file that the tree's
        `.gitattributes` does not track gets a line there, so a `git clone` smudges it.

        `extra_parents` come after the head in the new commit's parents (a merge names the merged head there).

        Raises HubError: 404 RevisionNotFound (not a branch), 412 (`parent_commit` is not the head), 400 (a path
        that is a file and a folder, a bad operation, a `parentCommit` that is not a commit id), 404 EntryNotFound
        (deleting what is not there).
        """
        if parent_commit is not None and (
            not isinstance(parent_commit, str) or not COMMIT_PATTERN.match(parent_commit)
        ):
            raise bad_request(f"'parentCommit' must be a 40-character commit id, not {parent_commit!r}")
        if isinstance(branch, str) and branch.startswith("refs/heads/"):
            branch = branch[len("refs/heads/") :]
        pull = isinstance(branch, str) and PR_REF_PATTERN.match(branch)
        ref = branch if pull else f"refs/heads/{branch}"
        handle = self._handle(repo)
        with handle.writing():
            handle.refs_cache = None
            refs = self.refs(repo)
            heads = refs["pulls"] if pull else refs["branches"]
            name = branch[len("refs/pr/") :] if pull else branch
            if name not in heads:
                raise HubError(404, f"Invalid rev id: {branch} is not a branch", "RevisionNotFound")
            head = heads[name]
            for extra in extra_parents or []:
                if self.commit_info(repo, extra) is None:
                    raise HubError(404, f"Invalid rev id: {extra}", "RevisionNotFound")
            if parent_commit and parent_commit != head:
                raise HubError(412, f"A commit has happened since {parent_commit}. Please refresh and try again.")
            editor = TreeEditor(lambda oid: self._tree(handle, oid), self._commit(handle, head).tree)
            new_objects: dict[bytes, object] = {}
            lfs_paths: list[str] = []
            for op in operations:
                kind, path, entry = op
                check_path(path.rstrip("/") if kind == "delete_folder" else path)
                if kind == "add":
                    mode, blob, is_lfs = self._blob_for(path, entry, handle)
                    if editor.get(path) != (mode, blob.id.decode()):  # an unchanged file is not written again
                        new_objects.setdefault(blob.id, blob)
                    editor.put(path, mode, blob.id.decode())
                    if is_lfs:
                        lfs_paths.append(path)
                elif kind == "delete":
                    editor.delete(path)
                elif kind == "delete_folder":
                    editor.delete_folder(path.rstrip("/"))
                else:
                    raise bad_request(f"Unknown operation {kind!r} for {path!r}")
            self._apply_lfs_rule(handle, editor, new_objects, lfs_paths)
            readme = editor.get("README.md")
            if readme is not None and readme != self._tree(handle, self._commit(handle, head).tree).get("README.md"):
                problem = readme_problem(self._blob_data(handle, new_objects, readme[1]))
                if problem:
                    raise bad_request(problem)
            trees, root = editor.build()
            for tree in trees:
                new_objects.setdefault(tree.id, tree)
            commit = new_commit(root, [head, *(extra_parents or [])], title, message, author, time.time())
            new_objects[commit.id] = commit
            write_objects(handle.git, list(new_objects.values()), lock=handle.lock)
            self._remember_blobs(handle, [o for o in new_objects.values() if isinstance(o, Blob)])
            self._move_ref(handle, ref, head, commit.id.decode())
            self._maybe_merge_packs(handle)
            return commit.id.decode()

    def _blob_for(self, path: str, entry: dict, handle: _Handle | None = None) -> tuple[int, Blob, bool]:
        """(mode, git blob, is LFS) of an added file: a pointer blob for LFS content, the content otherwise.

        A plain file given as an entry of `get_commit()["files"]` (a merge, a copy) is read from this repo by its
        blob id (`sha1`).
        """
        if not isinstance(entry, Mapping):
            raise bad_request(f"Cannot add {path!r}: no content")
        if "content" in entry:
            data = entry["content"]
            if not isinstance(data, bytes | bytearray | memoryview):
                raise bad_request(f"Cannot add {path!r}: content must be bytes")
            data = bytes(data)
        elif entry.get("lfs"):
            sha256, size = entry.get("sha256"), entry.get("size")
            if not isinstance(size, int) or not self.has_lfs_object(sha256, size):
                raise bad_request(f"LFS object {sha256} for {path} was not uploaded (or its size differs)")
            self.freshen_lfs_object(sha256)
            return MODE_FILE, Blob.from_string(lfs.Pointer(sha256, size).encode()), True
        else:
            sha256, sha1 = entry.get("sha256"), entry.get("sha1")
            if handle is not None and isinstance(sha1, str) and COMMIT_PATTERN.match(sha1) and handle.has(sha1):
                data = _read(handle, sha1)[1]
            else:
                try:
                    data = self.lfs_path(sha256).read_bytes()
                except FileNotFoundError:
                    raise bad_request(f"Content {sha256} for {path} was not staged") from None
        if path != ".gitattributes" and lfs.LfsRule().wants_lfs(path, len(data)):
            pointer = self.put_lfs_bytes(data)
            return MODE_FILE, Blob.from_string(pointer.encode()), True
        return MODE_FILE, Blob.from_string(data), False

    def _apply_lfs_rule(self, handle: _Handle, editor: TreeEditor, new_objects: dict, lfs_paths: list[str]) -> None:
        """Track in `.gitattributes` every LFS file it does not track yet, and turn plain files it tracks into LFS.

        A plain file whose path the new `.gitattributes` tracks becomes a pointer (its content moves to the pool):
        `git lfs` would do the same on the client.
        """
        attrs_oid = editor.get(".gitattributes")
        attrs = self._blob_data(handle, new_objects, attrs_oid[1]) if attrs_oid else b""
        rule = lfs.LfsRule.from_gitattributes(attrs)
        for path, (mode, oid) in editor.added().items():
            if path == ".gitattributes" or path in lfs_paths or not rule.tracked(path):
                continue
            data = self._blob_data(handle, new_objects, oid)
            if lfs.parse_pointer(data) is None:
                blob = Blob.from_string(self.put_lfs_bytes(data).encode())
                new_objects.setdefault(blob.id, blob)
                editor.put(path, mode, blob.id.decode())
        missing = [path for path in lfs_paths if not rule.tracked(path)]
        if missing:
            if attrs and not attrs.endswith(b"\n"):
                attrs += b"\n"
            attrs += b"".join(lfs.gitattributes_line(path) for path in missing)
            blob = Blob.from_string(attrs)
            new_objects.setdefault(blob.id, blob)
            editor.put(".gitattributes", MODE_FILE, blob.id.decode())

    def _blob_data(self, handle: _Handle, new_objects: dict, oid: str) -> bytes:
        obj = new_objects.get(oid.encode())
        return obj.as_raw_string() if obj is not None else _read(handle, oid)[1]

    def _move_ref(self, handle: _Handle, ref: str, old: str | None, new: str | None) -> None:
        """Compare-and-swap `ref` from `old` to `new` (None: create / delete), fsynced; 412 when it moved."""
        try:
            with handle.lock:
                if new is None:
                    ok = handle.git.refs.remove_if_equals(ref.encode(), old.encode() if old else None)
                else:
                    ok = handle.git.refs.set_if_equals(ref.encode(), old.encode() if old else None, new.encode())
        finally:
            handle.refs_cache = None
        if not ok:
            raise HubError(412, f"{ref} moved while this commit was written. Please refresh and try again.")
        fsync_ref(handle.path, ref)

    def _maybe_merge_packs(self, handle: _Handle) -> None:
        """Merge the small packs when a repo has more than MAX_PACKS (caller holds the write lock)."""
        pack_dir = handle.path / "objects" / "pack"
        packs = sorted(pack_dir.glob("*.pack"), key=lambda p: p.stat().st_size)
        if len(packs) <= MAX_PACKS:
            return
        merge_packs(handle.git, [p.with_suffix("") for p in packs[: len(packs) - MAX_PACKS // 2]], lock=handle.lock)

    # ---- git push ----------------------------------------------------------------------------------------------
    def check_pushed(self, repo: Repo, updates: list[RefUpdate]) -> dict[str, str]:
        """Why each ref update of a push would be refused ({ref: reason}); empty when all may go in.

        The rules are the Hub's: branches and tags only, valid names, `main` not deleted, no plain file over
        10 MB (LFS is for those), every LFS pointer's object uploaded, no `.git` path and UTF-8 names.
        """
        handle = self._handle(repo)
        refused: dict[str, str] = {}
        refs = self.refs(repo)
        known = set(refs["branches"].values()) | set(refs["tags"].values())
        for update in updates:
            reason = self._check_update(handle, update, known)
            if reason:
                refused[update.ref] = reason
        return refused

    def _check_update(self, handle: _Handle, update: RefUpdate, known: set[str]) -> str | None:
        prefix = next((p for p in ("refs/heads/", "refs/tags/") if update.ref.startswith(p)), None)
        if prefix is None:
            return "only branches (refs/heads/) and tags (refs/tags/) can be pushed"
        try:
            check_ref_name(update.ref[len(prefix) :])
        except (HubError, ValueError) as err:  # HubError today; repos.InvalidName (a ValueError) on the hub branch
            return getattr(err, "message", None) or str(err)
        if update.new == ZERO:
            if update.ref == "refs/heads/main":
                return "the main branch cannot be deleted"
            return None
        try:
            target = self._peel(handle, update.new)
            self._commit(handle, target)
        except KeyError:
            return f"{update.new} is not a commit"
        return self._check_new_commits(handle, target, known)

    def _check_new_commits(self, handle: _Handle, head: str, known: set[str]) -> str | None:
        """Check what the commits from `head` back to what the repo already has bring.

        Only what is new is read: commits reachable from the repo's refs were checked when they arrived, and each
        new commit's tree is compared with its first parent's, so an unchanged folder is skipped by its id.
        """
        old = self._ancestors(handle, known)
        stack, seen, seen_trees = [head], set(), set()
        while stack:
            oid = stack.pop()
            if oid in seen or oid in old:
                continue
            seen.add(oid)
            info = self._commit(handle, oid)
            base = self._commit(handle, info.parents[0]).tree if info.parents else None
            problem = self._check_tree(handle, info.tree, "", seen_trees, base)
            if problem:
                return f"commit {oid[:12]}: {problem}"
            stack.extend(info.parents)
        return None

    def _ancestors(self, handle: _Handle, heads: Iterable[str]) -> set[str]:
        out, stack = set(), list(heads)
        while stack:
            oid = stack.pop()
            if oid not in out:
                out.add(oid)
                stack.extend(self._commit(handle, oid).parents)
        return out

    def _check_tree(self, handle: _Handle, oid: str, prefix: str, seen: set[str], base: str | None) -> str | None:
        if oid in seen or oid == base:
            return None
        seen.add(oid)
        base_entries = self._tree(handle, base) if base else {}
        for name, (mode, sha) in self._tree(handle, oid).items():
            path = prefix + name
            if base_entries.get(name) == (mode, sha):
                continue
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                return f"{path!r}: file names must be UTF-8"
            if name.lower() == ".git":
                return f"{path}: '.git' is not allowed as a file or folder name"
            if any(is_control(c) for c in name) or "\\" in name:
                return f"{path!r}: control characters and backslashes are not allowed in file names"
            if path == "README.md" and mode != MODE_TREE:
                problem = readme_problem(_read(handle, sha)[1])
                if problem:
                    return problem
            if mode == MODE_TREE:
                old = base_entries.get(name)
                problem = self._check_tree(
                    handle, sha, path + "/", seen, old[1] if old and old[0] == MODE_TREE else None
                )
                if problem:
                    return problem
            elif mode == MODE_GITLINK:
                return f"{path}: submodules are not supported"
            else:
                size, pointer = self._blob_info(handle, sha)
                if pointer is None and size > lfs.LFS_THRESHOLD:
                    return (
                        f"{path} is {size} bytes: files over {lfs.LFS_THRESHOLD} bytes must be stored with "
                        "git-lfs (git lfs track, then commit again)"
                    )
                if pointer is not None and not self.has_lfs_object(pointer.oid, pointer.size):
                    return f"{path}: LFS object {pointer.oid} was not uploaded (run `git lfs push --all origin`)"
        return None

    def apply_push(self, repo: Repo, updates: list[RefUpdate]) -> dict[str, str | None]:
        """Move the refs of a checked push, each with a compare-and-swap; {ref: None or why it failed}.

        All-or-nothing for the checks (`check_pushed`); each ref move is atomic on its own, as with git.
        """
        handle = self._handle(repo)
        with handle.writing():
            refused = self.check_pushed(repo, updates)
            if refused:
                return {u.ref: refused.get(u.ref, "atomic push failed") for u in updates}
            result: dict[str, str | None] = {}
            for update in updates:
                try:
                    if update.new == ZERO:
                        self._move_ref(handle, update.ref, update.old, None)
                    else:
                        clash = ref_path_clash(
                            update.ref, [r.decode() for r in handle.git.refs.allkeys() if r != b"HEAD"]
                        )
                        if update.old == ZERO and clash:
                            raise HubError(409, f"conflicts with existing ref {clash}")
                        self._move_ref(handle, update.ref, None if update.old == ZERO else update.old, update.new)
                    result[update.ref] = None
                except HubError as err:
                    result[update.ref] = "stale info (fetch first)" if err.status == 412 else err.message
            self._maybe_merge_packs(handle)
            return result

    def lfs_objects(self, repo: Repo) -> frozenset[str]:
        """The sha256 of every LFS object any commit of any ref of `repo` points to (who may download what).

        Memoised per tree id (an unchanged folder is never walked twice) and per state of the refs.
        """
        handle = self._handle(repo)
        refs = self.refs(repo)
        key = tuple((kind, tuple(sorted(names.items()))) for kind, names in sorted(refs.items()))
        cached = self._lfs_sets.get(repo.dir)
        if cached and cached[0] == key:
            return cached[1]
        found: set[str] = set()
        for oid in self._ancestors(handle, [oid for names in refs.values() for oid in names.values()]):
            found |= self._tree_lfs(handle, self._commit(handle, oid).tree)
        result = frozenset(found)
        self._lfs_sets[repo.dir] = (key, result)
        return result

    def _tree_lfs(self, handle: _Handle, tree: str) -> frozenset[str]:
        """The LFS objects pointed to under tree `tree` (memoised by tree id)."""
        known = self._tree_lfs_cache.get(tree)
        if known is not None:
            return known
        found: set[str] = set()
        for mode, sha in self._tree(handle, tree).values():
            if mode == MODE_TREE:
                found |= self._tree_lfs(handle, sha)
            elif mode != MODE_GITLINK:
                pointer = self._blob_info(handle, sha)[1]
                if pointer:
                    found.add(pointer.oid)
        return self._tree_lfs_cache.put(tree, frozenset(found), len(found) + 1)


def readme_problem(data: bytes) -> str | None:
    """Why a repo's README.md cannot be stored (its metadata does not load), or None; an LFS README has no card."""
    if lfs.parse_pointer(data) is not None:
        return None
    try:
        read_front_matter(data.decode("utf-8"))
    except UnicodeDecodeError:
        return "Invalid metadata in README.md: the file is not UTF-8 text"
    except InvalidMetadata as err:
        return f"Invalid metadata in README.md: {err}"
    return None


def _read(handle: _Handle, oid: str) -> tuple[int, bytes]:
    try:
        return handle.read_raw(oid)
    except KeyError:
        raise _corrupt(handle, f"object {oid} is missing") from None
    except Exception as err:  # zlib/checksum errors: the store is damaged, say so plainly
        raise _corrupt(handle, f"object {oid} cannot be read ({type(err).__name__}: {err})") from None


def _corrupt(handle: _Handle, what: str) -> HubError:
    logger.error("git store damaged at %s: %s", handle.path, what)
    return HubError(500, f"The local hub's storage is damaged ({what}): run `babyhub hub fsck`")
