"""Migration of a root written by the old JSON store (storage.py) into bare git repositories (gitstore.py).

    from hub_tools.local_hub.migrate import migrate_root
    report = migrate_root("/path/to/hub")        # what `babyhub hub migrate --root DIR` runs; GitStore(root) too

The old layout: `blobs/ab/<sha256>` (content), `repos/<type>s/<ns>/<name>/{repo.json, refs.json,
commits/<oid>.json}` where each commit JSON holds the whole file map. Each repo becomes `<name>.git` beside its
old folder:

- every commit reachable from a branch or tag becomes a git commit (parents first), its tree built from the
  parent's by the change between the two file maps, with the same title, description, author and date (to the
  second: git keeps no milliseconds); commits no ref reaches (a deleted branch) are dropped and counted;
- file contents are byte-identical, `.gitattributes` included; a file the LFS rule (`lfs.LfsRule`) sends to LFS
  becomes a pointer, its content hard-linked from `blobs/` into `lfs/objects/` (copied where links fail);
- commit ids change (a git id hashes the content): `babyhub-ids.json` maps each old id to its git commit, and
  `GitStore.resolve` accepts the old ids, so a revision pinned by an old id still resolves to the same files;
- before the old folder goes, the head of every branch and tag is checked against its old file map (paths,
  sizes, blob ids or sha256): a mismatch raises `MigrationError` and leaves the old repo untouched.

Every step can be interrupted: a repo is built in a `.NAME.git.*.migrating` folder and renamed into place; the old
folder is removed only after, and `blobs/` only once no old repo is left. Running it again finishes the job.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from dulwich.objects import Blob

from hub_tools.errors import BabyhubError
from hub_tools.local_hub import lfs
from hub_tools.local_hub.gitplumbing import (
    fsync_dir,
    fsync_tree,
    init_bare,
    make_root,
    needs_migration,
    new_commit,
    write_atomic,
    write_json_atomic,
    write_objects,
)
from hub_tools.local_hub.gitstore import FORMAT
from hub_tools.local_hub.gittrees import MODE_FILE, MODE_TREE, TreeEditor
from hub_tools.repos import COMMIT_PATTERN, REPO_TYPES, SHA256_PATTERN

logger = logging.getLogger("babyhub.local_hub.migrate")

FLUSH_BYTES = 64 * 1024 * 1024  # write a pack whenever this much new object data is waiting


class MigrationError(BabyhubError):
    """An old repo that cannot be migrated as it is (a missing or damaged blob, an unreadable commit)."""


@dataclass
class MigrationReport:
    """What `migrate_root` did: repo ids by type, and counts."""

    repos: list[str] = field(default_factory=list)
    commits: int = 0
    dropped_commits: int = 0
    lfs_objects: int = 0
    already_done: list[str] = field(default_factory=list)


def migrate_root(root: Path | str) -> MigrationReport:
    """Turn every old JSON repo under `root` into a bare git repository (see the module docstring).

    Args:
        root: a local hub root written by the old store (or partly migrated, or already migrated: then nothing
            is done).

    Returns:
        A MigrationReport.

    Raises:
        MigrationError: naming the repo, commit and file that cannot be migrated; repos migrated before it are
            kept, the failing one and those after it stay in the old format. Also for a folder that is no hub root
            at all (nothing is written into it).
    """
    root = Path(root).resolve()
    if not needs_migration(root) and not (root / "FORMAT").is_file():
        raise MigrationError(
            f"{root} is not a local hub root (no repos/*/*/*/repo.json or blobs/ of the old store, no FORMAT file of "
            "the git store): give the folder `babyhub hub serve --root` was given"
        )
    make_root(root)
    for sub in ("lfs/objects", "tmp"):
        (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    report = MigrationReport()
    for repo_type in REPO_TYPES:
        base = root / "repos" / f"{repo_type}s"
        for meta_path in sorted(base.glob("*/*/repo.json")):
            old = meta_path.parent
            if old.name.startswith(".") or old.parent.is_symlink() or old.is_symlink():
                continue
            repo_id = f"{old.parent.name}/{old.name}"
            target = old.with_name(f"{old.name}.git")
            label = f"{repo_type} {repo_id}"
            if (target / "babyhub.json").is_file():
                report.already_done.append(label)
            else:
                _migrate_repo(root, old, target, label, report)
                report.repos.append(label)
            trash = root / "tmp" / f"migrated-{uuid.uuid4().hex}"
            os.replace(old, trash)
            fsync_dir(old.parent)
            shutil.rmtree(trash, ignore_errors=True)
    if (root / "blobs").is_dir():
        trash = root / "tmp" / f"old-blobs-{uuid.uuid4().hex}"
        os.replace(root / "blobs", trash)
        fsync_dir(root)
        shutil.rmtree(trash, ignore_errors=True)
    write_atomic(root / "FORMAT", (FORMAT + "\n").encode(), 0o644)
    if report.repos:
        logger.info(
            "local hub: migrated %d repos (%d commits, %d LFS objects) to git under %s",
            len(report.repos),
            report.commits,
            report.lfs_objects,
            root,
        )
    return report


def _read_json(path: Path, label: str):
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise MigrationError(f"cannot migrate {label}: {path.name} is unreadable ({err})") from None


def _topological(commits: dict[str, dict], heads: list[str], label: str) -> list[str]:
    """Commits reachable from `heads`, every parent before its children."""
    order, state = [], {}
    for head in heads:
        stack = [(head, False)]
        while stack:
            oid, expanded = stack.pop()
            if state.get(oid) == "done":
                continue
            if expanded:
                state[oid] = "done"
                order.append(oid)
                continue
            if oid not in commits:
                raise MigrationError(f"cannot migrate {label}: commit {oid} is referenced but missing")
            state[oid] = "open"
            stack.append((oid, True))
            stack.extend((p, False) for p in commits[oid].get("parents", []) if state.get(p) != "done")
    return order


def _timestamp(date: str) -> float:
    try:
        return datetime.strptime(date, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except (TypeError, ValueError):
        try:
            return datetime.fromisoformat(str(date).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0


class _RepoMigration:
    """State of one repo's migration: the objects waiting to be written, the LFS objects linked."""

    def __init__(self, root: Path, staging: Path, label: str, report: MigrationReport):
        self.root = root
        self.label = label
        self.report = report
        self.git = init_bare(staging)
        self.pending: dict[bytes, object] = {}
        self.pending_bytes = 0
        self.trees: dict[str, dict] = {}  # every tree written, readable before it is flushed

    def read_tree(self, oid: str) -> dict:
        return self.trees[oid]

    def add(self, obj) -> None:
        if obj.id not in self.pending:
            self.pending[obj.id] = obj
            self.pending_bytes += len(obj.as_raw_string())
        if self.pending_bytes > FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        write_objects(self.git, list(self.pending.values()))
        self.pending.clear()
        self.pending_bytes = 0

    def blob_for(self, path: str, entry: dict, rule: lfs.LfsRule, commit: str) -> Blob:
        """The git blob of an old file entry: a pointer (content linked into the pool) or the content itself."""
        sha256, size = entry.get("sha256"), entry.get("size")
        where = f"cannot migrate {self.label}: file {path!r} of commit {commit}"
        if not isinstance(sha256, str) or not SHA256_PATTERN.match(sha256) or not isinstance(size, int):
            raise MigrationError(f"{where} has no valid sha256/size in its commit JSON")
        source = self.root / "blobs" / sha256[:2] / sha256
        if entry.get("lfs") or (path != ".gitattributes" and rule.wants_lfs(path, size)):
            self.link_lfs(source, sha256, size, where)
            return Blob.from_string(lfs.Pointer(sha256, size).encode())
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            raise MigrationError(f"{where}: its content {source} is missing") from None
        if len(data) != size:
            raise MigrationError(f"{where}: {source} has {len(data)} bytes, the commit says {size}")
        return Blob.from_string(data)

    def link_lfs(self, source: Path, sha256: str, size: int, where: str) -> None:
        dest = self.root / "lfs" / "objects" / sha256[:2] / sha256[2:4] / sha256
        if dest.is_file() and dest.stat().st_size == size:
            return
        try:
            if source.stat().st_size != size:
                raise MigrationError(f"{where}: {source} has {source.stat().st_size} bytes, the commit says {size}")
        except FileNotFoundError:
            raise MigrationError(f"{where}: its content {source} is missing") from None
        dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.root / "tmp" / f"lfs-{uuid.uuid4().hex}"
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
        sha1 = source.with_name(source.name + ".sha1")
        if sha1.is_file() and not dest.with_name(dest.name + ".sha1").is_file():
            write_atomic(dest.with_name(dest.name + ".sha1"), sha1.read_bytes())
        self.report.lfs_objects += 1


def _migrate_repo(root: Path, old: Path, target: Path, label: str, report: MigrationReport) -> None:
    """Build `target` (a bare repo) from the old repo folder `old`; `old` is left as it was."""
    for stale in old.parent.glob(f".{target.name}.*.migrating"):
        shutil.rmtree(stale, ignore_errors=True)
    meta = _read_json(old / "repo.json", label)
    refs = _read_json(old / "refs.json", label)
    commits = {}
    for path in (old / "commits").glob("*.json"):
        commit = _read_json(path, label)
        commits[commit.get("id") or path.stem] = commit
    heads = [*refs.get("branches", {}).values(), *refs.get("tags", {}).values()]
    order = _topological(commits, heads, label)
    staging = old.parent / f".{target.name}.{uuid.uuid4().hex}.migrating"
    job = _RepoMigration(root, staging, label, report)
    try:
        new_ids: dict[str, str] = {}
        new_trees: dict[str, str] = {}
        for oid in order:
            commit = commits[oid]
            files = commit.get("files") or {}
            parents = commit.get("parents") or []
            parent_files = commits[parents[0]].get("files") or {} if parents else {}
            base_tree = new_trees[parents[0]] if parents else None
            editor = TreeEditor(lambda t: job.read_tree(t), base_tree)
            rule = lfs.LfsRule.from_gitattributes(_old_gitattributes(root, files.get(".gitattributes"), label))
            for path in parent_files:
                if path not in files:
                    editor.delete(path)
            for path, entry in sorted(files.items()):
                if parent_files.get(path) == entry and base_tree is not None:
                    continue
                blob = job.blob_for(path, entry, rule, oid)
                job.add(blob)
                editor.put(path, MODE_FILE, blob.id.decode())
            trees, tree = editor.build()
            for obj in trees:
                job.trees[obj.id.decode()] = {
                    entry.path.decode("utf-8", "surrogateescape"): (entry.mode, entry.sha.decode())
                    for entry in obj.iteritems()
                }
                job.add(obj)
            new = new_commit(
                tree,
                [new_ids[p] for p in parents],
                str(commit.get("title") or ""),
                str(commit.get("message") or ""),
                str(commit.get("author") or "babyhub"),
                _timestamp(commit.get("date")),
            )
            job.add(new)
            new_ids[oid] = new.id.decode()
            new_trees[oid] = tree
        job.flush()
        for kind, prefix in (("branches", b"refs/heads/"), ("tags", b"refs/tags/")):
            for name, oid in refs.get(kind, {}).items():
                job.git.refs.set_if_equals(prefix + name.encode(), None, new_ids[oid].encode())
        _check_heads(job, refs, commits, new_trees, label)
        job.git.close()
        write_json_atomic(staging / "babyhub.json", meta)
        write_json_atomic(staging / "babyhub-ids.json", new_ids)
        fsync_tree(staging)
        os.replace(staging, target)
        fsync_dir(target.parent)
    except BaseException:
        job.git.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report.commits += len(order)
    report.dropped_commits += len([c for c in commits if c not in new_ids and COMMIT_PATTERN.match(c)])


def _old_gitattributes(root: Path, entry: dict | None, label: str) -> bytes:
    if not entry or entry.get("lfs") or not SHA256_PATTERN.match(str(entry.get("sha256"))):
        return b""
    path = root / "blobs" / entry["sha256"][:2] / entry["sha256"]
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise MigrationError(f"cannot migrate {label}: the content of .gitattributes ({path}) is missing") from None


def _check_heads(job: _RepoMigration, refs: dict, commits: dict, new_trees: dict, label: str) -> None:
    """Every branch and tag head of the new repo lists the old file map: same paths, sizes and ids."""

    def walk(tree: str, prefix: str, out: dict) -> dict:
        for name, (mode, sha) in job.read_tree(tree).items():
            if mode == MODE_TREE:
                walk(sha, f"{prefix}{name}/", out)
            else:
                out[prefix + name] = sha
        return out

    for kind, what in (("branches", "branch"), ("tags", "tag")):
        for name, oid in refs.get(kind, {}).items():
            old_files = commits[oid].get("files") or {}
            new_files = walk(new_trees[oid], "", {})
            if sorted(old_files) != sorted(new_files):
                missing = sorted(set(old_files) ^ set(new_files))[:3]
                raise MigrationError(f"cannot migrate {label}: {what} {name} lists other files: {missing}")
            for path, entry in old_files.items():
                if not _same_file(job.git.object_store[new_files[path].encode()].as_raw_string(), entry):
                    raise MigrationError(f"cannot migrate {label}: {path} at {what} {name} differs after migrating")


def _same_file(data: bytes, entry: dict) -> bool:
    """Whether a migrated blob (`data`: a pointer or the content) stands for the old entry."""
    pointer = lfs.parse_pointer(data)
    if pointer is not None:
        return (pointer.oid, pointer.size) == (entry["sha256"], entry["size"])
    return len(data) == entry["size"] and entry.get("sha1") in (None, Blob.from_string(data).id.decode())
