"""fsck and gc of a git-backed local hub root (what `babyhub hub fsck --root DIR` and `hub gc` run).

Both walk the same graph, from disk and not through a running server's caches: every repo's branches and tags
-> commits (all parents) -> trees -> blobs, and each LFS pointer -> its object in `lfs/objects`.

- `fsck(root)` reads every reachable object and checks it is there, of the right type, and hashes to its id; an
  LFS object must exist with the pointer's size and (by default) sha256; then every pack's checksums. It stops at
  the first inconsistency (`stop_at_first=False` lists them all) and says where: repo, ref, commit, path.
- `gc(root, grace_seconds)` removes what nothing references and is older than the grace period: git objects
  (packs of refused pushes, commits of deleted branches: a pack holding any is rewritten without them, under the
  repo's write lock), LFS objects no repo points to (blobs of refused commits, staged files), old temp files and
  the plain-blob cache. Young things are spared, so an upload waiting for its commit, or a push between its pack
  and its ref update, is never taken; an LFS object that a commit reuses is touched first (`freshen_lfs_object`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.objects import parse_tree
from dulwich.repo import Repo as DulwichRepo

from hub_tools.errors import BabyhubError
from hub_tools.local_hub import lfs
from hub_tools.local_hub.gitplumbing import BLOBINFO, merge_packs, read_blobinfo, write_blobinfo
from hub_tools.local_hub.gitstore import FORMAT
from hub_tools.local_hub.gittrees import MODE_GITLINK, MODE_TREE
from hub_tools.repos import REPO_TYPES, SHA256_PATTERN

logger = logging.getLogger("babyhub.local_hub.maintenance")

DEFAULT_GRACE = 24 * 3600  # as long as an LFS upload grant lives
_TYPE_NAMES = {1: b"commit", 2: b"tree", 3: b"blob", 4: b"tag"}


@dataclass(frozen=True)
class Problem:
    """One inconsistency: in which repo, where (ref, commit, path), and what is wrong."""

    repo: str
    where: str
    what: str

    def __str__(self) -> str:
        place = ", ".join(p for p in (self.repo, self.where) if p)
        return f"{place}: {self.what}" if place else self.what


@dataclass
class FsckReport:
    """What fsck checked, and the problems found (empty when the root is consistent)."""

    repos: int = 0
    commits: int = 0
    trees: int = 0
    blobs: int = 0
    lfs_objects: int = 0
    packs: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _is_git_root(root: Path) -> bool:
    """True for a folder the git store wrote (its FORMAT file names this format)."""
    try:
        return (root / "FORMAT").read_text().strip() == FORMAT
    except OSError:
        return False


class _Stop(Exception):
    pass


def repo_dirs(root: Path) -> list[tuple[str, Path]]:
    """("model ns/name", bare repo folder) of every repo under `root` (no symlinks, no staging folders)."""
    out = []
    for repo_type in REPO_TYPES:
        base = root / "repos" / f"{repo_type}s"
        for ns in sorted(base.iterdir()) if base.is_dir() else []:
            if ns.is_symlink() or not ns.is_dir() or ns.name.startswith("."):
                continue
            for repo in sorted(ns.glob("*.git")):
                if not repo.is_symlink() and not repo.name.startswith(".") and (repo / "babyhub.json").is_file():
                    out.append((f"{repo_type} {ns.name}/{repo.name[:-4]}", repo))
    return out


class _Walker:
    """The reachability walk of one repo: reads (and optionally verifies) every object once."""

    def __init__(self, git: DulwichRepo, label: str, verify: bool, problem):
        self.git = git
        self.label = label
        self.verify = verify
        self.problem = problem  # (where, what) -> None; raises _Stop to stop
        self.seen: set[str] = set()
        self.lfs: dict[str, tuple[int, str]] = {}  # sha256 -> (size, where) of every pointer met
        self.blobs: dict[str, tuple[int, lfs.Pointer | None, str]] = {}  # blob id -> (size, pointer, where)
        self.counts = {"commit": 0, "tree": 0, "blob": 0}

    def read(self, oid: str, kind: int, where: str) -> bytes | None:
        try:
            actual, raw = self.git.object_store.get_raw(oid.encode())
        except KeyError:
            self.problem(where, f"{_TYPE_NAMES[kind].decode()} {oid} is missing")
            return None
        except Exception as err:  # zlib, checksum, truncated pack: damaged storage
            self.problem(where, f"{_TYPE_NAMES[kind].decode()} {oid} cannot be read ({type(err).__name__}: {err})")
            return None
        wanted, found = _TYPE_NAMES[kind].decode(), _TYPE_NAMES.get(actual, b"?").decode()
        if actual != kind and not (kind == 1 and actual == 4):
            self.problem(where, f"{oid} is a {found}, not a {wanted}")
            return None
        if self.verify:
            digest = hashlib.sha1(_TYPE_NAMES[actual] + b" %d\0" % len(raw) + raw).hexdigest()
            if digest != oid:
                self.problem(where, f"{found} {oid} is damaged (its content hashes to {digest})")
                return None
        return raw

    def ref(self, name: str, oid: str) -> None:
        stack = [(oid, name)]
        while stack:
            oid, where = stack.pop()
            if oid in self.seen:
                continue
            self.seen.add(oid)
            raw = self.read(oid, 1, where)
            if raw is None:
                continue
            if raw.startswith(b"object "):  # an annotated tag: follow it
                stack.append((raw[7:47].decode(), where))
                continue
            self.counts["commit"] += 1
            headers = raw.split(b"\n\n", 1)[0].split(b"\n")
            tree = next((h[5:].decode() for h in headers if h.startswith(b"tree ")), None)
            if tree is None:
                self.problem(f"{where}, commit {oid}", "the commit names no tree")
                continue
            self.tree(tree, f"{where}, commit {oid[:12]}", "")
            stack.extend((h[7:].decode(), where) for h in headers if h.startswith(b"parent "))

    def tree(self, oid: str, where: str, prefix: str) -> None:
        if oid in self.seen:
            return
        self.seen.add(oid)
        raw = self.read(oid, 2, f"{where}, folder {prefix or '/'}")
        if raw is None:
            return
        self.counts["tree"] += 1
        try:
            entries = parse_tree(raw, 20)
        except Exception as err:
            self.problem(f"{where}, folder {prefix or '/'}", f"tree {oid} cannot be parsed ({err})")
            return
        for name, mode, sha in entries:
            path = prefix + name.decode("utf-8", "replace")
            sha = sha.decode()
            if mode == MODE_TREE:
                self.tree(sha, where, path + "/")
            elif mode != MODE_GITLINK:
                self.blob(sha, f"{where}, file {path}")

    def blob(self, oid: str, where: str) -> None:
        if oid in self.seen:
            return
        self.seen.add(oid)
        data = self.read(oid, 3, where)
        if data is None:
            return
        self.counts["blob"] += 1
        pointer = lfs.parse_pointer(data)
        self.blobs[oid] = (pointer.size if pointer else len(data), pointer, where)
        if pointer is not None and pointer.oid not in self.lfs:
            self.lfs[pointer.oid] = (pointer.size, where)


def fsck(root: Path | str, *, hash_lfs: bool = True, stop_at_first: bool = True) -> FsckReport:
    """Check every ref -> commit -> tree -> blob / LFS object of every repo under `root`.

    Args:
        root: a git-backed local hub root.
        hash_lfs: hash every LFS object's content (else only its size is checked).
        stop_at_first: stop at the first problem (what `hub fsck` reports before exiting 1).

    Returns:
        An FsckReport; `report.ok` is False when something is missing or damaged, `report.problems` says where.
    """
    root = Path(root).resolve()
    report = FsckReport()

    def problem(repo: str, where: str, what: str) -> None:
        report.problems.append(Problem(repo, where, what))
        if stop_at_first:
            raise _Stop

    try:
        if not _is_git_root(root):
            problem("", str(root), f"not a git-backed hub root (no FORMAT {FORMAT!r}): run `babyhub hub migrate`")
        for label, path in repo_dirs(root):
            report.repos += 1

            def in_repo(where: str, what: str, label: str = label) -> None:
                problem(label, where, what)

            _fsck_repo(root, label, path, hash_lfs, report, in_repo)
    except _Stop:
        pass
    return report


def _fsck_repo(root: Path, label: str, path: Path, hash_lfs: bool, report: FsckReport, problem) -> None:
    try:
        meta = json.loads((path / "babyhub.json").read_bytes())
        if not isinstance(meta, dict) or "private" not in meta:
            problem("babyhub.json", "the repo's metadata has no 'private' field")
    except (OSError, ValueError) as err:
        problem("babyhub.json", f"unreadable ({err})")
    try:
        git = DulwichRepo(str(path))
    except Exception as err:
        problem("", f"not a git repository ({err})")
        return
    try:
        walker = _Walker(git, label, True, problem)
        refs = {k.decode("utf-8", "replace"): v.decode() for k, v in git.refs.as_dict().items()}
        if "refs/heads/main" not in refs:
            problem("refs", "the repo has no main branch")
        for name, oid in sorted(refs.items(), key=lambda item: (item[0] != "refs/heads/main", item[0])):
            if name.startswith(("refs/heads/", "refs/tags/", "refs/pr/")):
                walker.ref(name.split("/", 2)[2] if name.startswith("refs/heads/") else name, oid)
        for oid, (size, pointer) in read_blobinfo(path / "babyhub-blobinfo").items():
            known = walker.blobs.get(oid)
            if known is not None and (known[0], known[1]) != (size, pointer):
                problem(known[2], f"babyhub-blobinfo says blob {oid} is {size} bytes/{pointer}: delete that file")
        report.commits += walker.counts["commit"]
        report.trees += walker.counts["tree"]
        report.blobs += walker.counts["blob"]
        for oid, (size, where) in sorted(walker.lfs.items()):
            report.lfs_objects += 1
            lfs_file = root / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
            try:
                actual = lfs_file.stat().st_size
            except FileNotFoundError:
                problem(where, f"LFS object {oid} is missing")
                continue
            if actual != size:
                problem(where, f"LFS object {oid} has {actual} bytes, its pointer says {size}")
                continue
            if hash_lfs and _sha256(lfs_file) != oid:
                problem(where, f"LFS object {oid} is damaged (its content hashes to something else)")
        for pack in git.object_store.packs:
            report.packs += 1
            try:
                pack.index.check()
                pack.data.check()
            except Exception as err:
                problem(f"pack {Path(pack._basename).name}", f"damaged ({type(err).__name__}: {err})")
    finally:
        git.close()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


# ---- gc ------------------------------------------------------------------------------------------------------------
@dataclass
class GcReport:
    """What gc removed."""

    git_objects_dropped: int = 0
    packs_rewritten: int = 0
    lfs_objects_removed: int = 0
    lfs_bytes_removed: int = 0
    tmp_removed: int = 0
    cache_removed: int = 0
    skipped_lfs_reason: str | None = None


def gc(root: Path | str, grace_seconds: float = DEFAULT_GRACE, *, now: float | None = None) -> GcReport:
    """Remove unreferenced objects older than `grace_seconds` (see the module docstring).

    Args:
        root: a git-backed local hub root (a running server may use it meanwhile).
        grace_seconds: spare anything younger than this (uploads waiting for their commit, pushes in flight).
        now: the clock (tests).

    Returns:
        A GcReport. LFS objects are only pruned when every repo could be walked: a damaged repo (see `fsck`)
        might reference objects nobody else knows of, so they are kept and `skipped_lfs_reason` says why.
    """
    root = Path(root).resolve()
    if not _is_git_root(root):  # gc deletes under ROOT/tmp and ROOT/cache: never in a folder that is not a hub's
        raise BabyhubError(
            f"{root} is not a git-backed local hub root (no FORMAT {FORMAT!r}): give the folder `babyhub hub serve "
            "--root` was given (an older hub: `babyhub hub migrate` first)"
        )
    now = time.time() if now is None else now
    cutoff = now - grace_seconds
    report = GcReport()
    referenced: set[str] = set()
    for label, path in repo_dirs(root):
        try:
            referenced |= _gc_repo(path, label, cutoff, report)
        except Exception as err:
            logger.error("gc: %s cannot be walked (%s); LFS objects are kept", label, err)
            report.skipped_lfs_reason = f"{label} cannot be walked ({err}): run `babyhub hub fsck`"
    if report.skipped_lfs_reason is None:
        _gc_lfs(root, referenced, cutoff, report)
    for entry in (root / "tmp").iterdir() if (root / "tmp").is_dir() else []:
        if entry.lstat().st_mtime < cutoff:
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            report.tmp_removed += 1
    for entry in (root / "cache" / "blobs").iterdir() if (root / "cache" / "blobs").is_dir() else []:
        if entry.lstat().st_mtime < cutoff:
            entry.unlink(missing_ok=True)
            report.cache_removed += 1
    return report


def _gc_repo(path: Path, label: str, cutoff: float, report: GcReport) -> set[str]:
    """Drop the unreachable git objects of old packs and loose files; the LFS oids the repo references."""
    fd = os.open(path / "babyhub.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # no commit or push moves a ref while the reachable set is computed
        git = DulwichRepo(str(path))
        try:

            def fail(where, what):
                raise RuntimeError(f"{where}: {what}")

            walker = _Walker(git, label, False, fail)
            for name, oid in git.refs.as_dict().items():
                if name.startswith((b"refs/heads/", b"refs/tags/", b"refs/pr/")):
                    walker.ref(name.decode("utf-8", "replace"), oid.decode())
            reachable = walker.seen
            store = git.object_store
            old_packs = [Path(p._basename) for p in store.packs if os.stat(p._basename + ".pack").st_mtime < cutoff]
            if old_packs:
                kept, dropped = merge_packs(git, old_packs, keep=lambda oid: oid in reachable)
                if dropped:
                    report.packs_rewritten += len(old_packs)
                    report.git_objects_dropped += dropped
            blobinfo = path / "babyhub-blobinfo"
            if blobinfo.is_file():  # drop the records of dropped blobs and repeated records
                kept = {oid: info for oid, info in read_blobinfo(blobinfo).items() if oid in reachable}
                if blobinfo.stat().st_size != len(kept) * BLOBINFO.size:
                    write_blobinfo(blobinfo, kept)
            for oid in list(store._iter_loose_objects()):
                loose = Path(store._get_shafile_path(oid))
                if oid.decode() not in reachable and loose.stat().st_mtime < cutoff:
                    loose.unlink(missing_ok=True)
                    report.git_objects_dropped += 1
            return set(walker.lfs)
        finally:
            git.close()
    finally:
        os.close(fd)


def _gc_lfs(root: Path, referenced: set[str], cutoff: float, report: GcReport) -> None:
    for path in sorted((root / "lfs" / "objects").glob("*/*/*")):
        name = path.name
        oid = name[: -len(".sha1")] if name.endswith(".sha1") else name
        if not SHA256_PATTERN.match(oid) or oid in referenced:
            continue
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if name.endswith(".sha1"):
            if not path.with_name(oid).exists() and stat.st_mtime < cutoff:
                path.unlink(missing_ok=True)
            continue
        if stat.st_mtime >= cutoff:  # young: an upload waiting for its commit, or just reused
            continue
        path.unlink(missing_ok=True)
        path.with_name(name + ".sha1").unlink(missing_ok=True)
        report.lfs_objects_removed += 1
        report.lfs_bytes_removed += stat.st_size
