"""The git store's plumbing: bare repositories, packs, commits, and durable files under the root.

Pure helpers and thin wrappers around dulwich and the file system, shared by `gitstore` (the store), `migrate`
and `maintenance`. What they guarantee is the store's durability: a pack and its index are fsynced before they
are renamed into place, the folder after; a file is written to a temp name, fsynced, renamed, its folder fsynced.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import struct
import threading
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from dulwich.objects import Commit
from dulwich.repo import Repo as DulwichRepo

from hub_tools.local_hub import lfs

logger = logging.getLogger("babyhub.local_hub.gitstore")

AUTHOR_EMAIL_DOMAIN = "users.noreply.babyhub.local"


# A record of a repo's blob-info cache: blob id, content size, sha256 of the LFS object (zeros: not a pointer).
def format_message(title: str, message: str) -> bytes:
    """A git commit message from the Hub's summary and description: title, blank line, description."""
    title = " ".join(title.splitlines()).strip() or "Upload files"
    body = message.strip("\n")
    return (f"{title}\n\n{body}\n" if body else f"{title}\n").encode()


def parse_message(raw: bytes) -> tuple[str, str]:
    """(title, description) of a git commit message, as `format_message` wrote it (or as git does)."""
    text = raw.decode("utf-8", "replace")
    title, _, rest = text.partition("\n")
    return title.strip(), rest.strip("\n")


def iso_date(timestamp: int | float) -> str:
    """The Hub's date format (`2024-05-01T12:00:00.000Z`) of a POSIX timestamp."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def git_identity(user: str) -> bytes:
    """`user <user@...>`: git wants an e-mail; the Hub's author is the user name."""
    name = re.sub(r"[<>\n]", "", user or "babyhub").strip() or "babyhub"
    return f"{name} <{re.sub(r'[^A-Za-z0-9._-]', '-', name)}@{AUTHOR_EMAIL_DOMAIN}>".encode()


def identity_user(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").split(" <", 1)[0].strip()


def fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` through a fsynced temp file and a rename, then fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json_atomic(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, sort_keys=True, indent=1).encode())


BLOBINFO = struct.Struct("<20sQ32s")


def read_blobinfo(path: Path) -> dict[str, tuple[int, lfs.Pointer | None]]:
    """The records of a repo's `babyhub-blobinfo` file ({blob id: (size, pointer)}; a torn last record ignored)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    out = {}
    size = BLOBINFO.size
    for start in range(0, len(raw) - len(raw) % size, size):
        oid, length, lfs_oid = BLOBINFO.unpack_from(raw, start)
        out[oid.hex()] = (length, lfs.Pointer(lfs_oid.hex(), length) if lfs_oid != bytes(32) else None)
    return out


def write_blobinfo(path: Path, infos: dict[str, tuple[int, lfs.Pointer | None]]) -> None:
    """Rewrite a repo's `babyhub-blobinfo` with exactly `infos` (gc keeps the reachable blobs' records)."""
    records = b"".join(
        BLOBINFO.pack(bytes.fromhex(oid), size, bytes.fromhex(pointer.oid) if pointer else b"")
        for oid, (size, pointer) in sorted(infos.items())
    )
    write_atomic(path, records)


# ---- git plumbing --------------------------------------------------------------------------------------------------
def init_bare(path: Path) -> DulwichRepo:
    """A new bare repository at `path` (0700), fsyncing objects, HEAD on `main`."""
    path.mkdir(mode=0o700, parents=True)
    git = DulwichRepo.init_bare(str(path))
    config = git.get_config()
    config.set((b"core",), b"fsyncObjectFiles", True)
    config.set((b"core",), b"logAllRefUpdates", False)
    config.set((b"receive",), b"fsckObjects", True)
    config.write_to_path()
    git.refs.set_symbolic_ref(b"HEAD", b"refs/heads/main")
    git.object_store.fsync_object_files = True
    return git


def new_commit(tree: str | bytes, parents: list[str], title: str, message: str, author: str, when: float) -> Commit:
    commit = Commit()
    commit.tree = tree.encode() if isinstance(tree, str) else tree
    commit.parents = [p.encode() for p in parents]
    commit.author = commit.committer = git_identity(author)
    commit.author_time = commit.commit_time = int(when)
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = format_message(title or "", message or "")
    return commit


def write_objects(git: DulwichRepo, objects: list, lock: threading.RLock | None = None) -> None:
    """Write `objects` as one pack and its index, each fsynced, renamed into place, then fsync the folder.

    The pack is written with the index entries that writing it produces (dulwich's `add_objects` writes the pack
    and then reads it all back to index it: twice the work). The index appears last: a reader sees a pack only
    once both are whole.
    """
    from dulwich.pack import write_pack_index, write_pack_objects

    if not objects:
        return
    pack_dir = Path(git.object_store.pack_dir)
    tmp_pack, tmp_idx = pack_dir / f"tmp_pack_{uuid.uuid4().hex}", pack_dir / f"tmp_idx_{uuid.uuid4().hex}"
    try:
        with _private(tmp_pack) as f:
            entries, checksum = write_pack_objects(f.write, objects, git.object_store.object_format)
            f.flush()
            os.fsync(f.fileno())
        with _private(tmp_idx) as f:
            index = sorted((sha, offset, crc) for sha, (offset, crc) in entries.items())
            write_pack_index(f, index, checksum, version=2)
            f.flush()
            os.fsync(f.fileno())
        name = pack_dir / f"pack-{checksum.hex()}"
        os.replace(tmp_pack, name.with_suffix(".pack"))
        os.replace(tmp_idx, name.with_suffix(".idx"))
    finally:
        tmp_pack.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
    fsync_dir(pack_dir)


def _private(path: Path):
    """A new file open for writing, readable by its owner only (0600, whatever the umask)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def merge_packs(
    git: DulwichRepo, basenames: list[Path], lock: threading.RLock | None = None, keep=None
) -> tuple[int, int]:
    """Rewrite the packs `basenames` (paths without .pack) as one, then remove them; (objects kept, dropped).

    Objects stream from the old packs into the new one (memory stays flat); the new pack is fsynced and in place
    before an old one goes, so no object is ever missing. `keep(hex id) -> bool` drops the others (gc).
    """
    from dulwich.pack import write_pack_from_container

    with lock or threading.RLock():
        store = git.object_store
        wanted = {str(b) for b in basenames}
        packs = [p for p in store.packs if p._basename in wanted]
        if not packs or (len(packs) < 2 and keep is None):
            return 0, 0
        ids, dropped = {}, 0
        for pack in packs:
            for sha in pack:
                if keep is None or keep(sha.decode()):
                    ids[sha] = None
                else:
                    dropped += 1
        if keep is not None and not dropped:
            return len(ids), 0
        if ids:
            f, commit, abort = store.add_pack()
            try:
                write_pack_from_container(f.write, store, list(ids.items()), store.object_format)
            except BaseException:
                abort()
                raise
            commit()
            fsync_dir(Path(store.pack_dir))
        for pack in packs:
            store._remove_pack(pack)
        store._update_pack_cache()
        return len(ids), dropped


def fsync_ref(repo_dir: Path, ref: str) -> None:
    """fsync the folder of a ref just written or removed (its nearest existing folder: git prunes empty ones)."""
    folder = repo_dir / os.path.dirname(ref)
    while not folder.is_dir() and folder != repo_dir:
        folder = folder.parent
    fsync_dir(folder)


def fsync_tree(path: Path) -> None:
    """fsync every file and folder under `path` (a staging folder, before it is renamed into place)."""
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


def ref_path_clash(name: str, existing: Iterable[str]) -> str | None:
    """An existing ref that `name` cannot sit beside in git's ref folders (`a` vs `a/b`), if any."""
    for other in existing:
        bare = other.split("/", 2)[2] if other.startswith("refs/") else other
        mine = name.split("/", 2)[2] if name.startswith("refs/") else name
        if bare != mine and (bare.startswith(mine + "/") or mine.startswith(bare + "/")):
            return other
    return None


def read_range(path: Path, start: int, length: int) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        remaining = length
        while remaining > 0:
            chunk = f.read(min(1 << 20, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            yield chunk


def real_dirs(path: Path) -> list[os.DirEntry]:
    """Sub-folders of `path` that are real folders (no symlinks) and not hidden (staging)."""
    try:
        with os.scandir(path) as it:
            return sorted(
                (e for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")),
                key=lambda e: e.name,
            )
    except FileNotFoundError:
        return []


# ---- the root ------------------------------------------------------------------------------------------------------
def make_root(root: Path) -> None:
    """Create `root` 0700 (and tighten an existing one): private repos are nobody else's to read."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)  # mode & ~umask: 0700 whatever the umask
    if stat.S_IMODE(root.stat().st_mode) & 0o077:
        os.chmod(root, 0o700)


def needs_migration(root: Path) -> bool:
    """True for a root the old store wrote: JSON repos (repo.json) or a blobs/ folder, and no FORMAT file."""
    return (root / "blobs").is_dir() or any((root / "repos").glob("*/*/*/repo.json"))


def _finish_move(staging: Path) -> None:
    """Put a repo a crash left in its `.NAME.git.<id>.moving` folder (a rename under way) at NAME.git."""
    name = staging.name[1:].rsplit(".", 2)[0]
    target = staging.with_name(name)
    if target.exists() or not name.endswith(".git"):
        logger.warning("local hub: %s is a repo left mid-rename; %s exists: move it by hand", staging, target)
        return
    meta_path = staging / "babyhub.json"
    try:
        meta = json.loads(meta_path.read_bytes())
        meta["id"] = f"{staging.parent.name}/{name[:-4]}"
        write_json_atomic(meta_path, meta)
    except (OSError, ValueError) as err:
        logger.warning("local hub: %s is a repo left mid-rename without readable metadata (%s)", staging, err)
        return
    os.replace(staging, target)
    fsync_dir(staging.parent)
    logger.info("local hub: finished renaming %s to %s", staging.name, target.name)


def remove_leftovers(root: Path) -> list[str]:
    """Remove what a crash leaves behind; the names removed (relative to the root).

    Temp files and uploads in `tmp/` (deleted repos on their way out included), repo staging folders
    (`.NAME.git.*.creating`, `.migrating`), dot-temp files of atomic writes, git lock files (a stale
    `refs/heads/main.lock` would block every later push) and dulwich's half-written `tmp*.pack` files; a repo left
    mid-rename (`.moving`) is put at its new name. Only call it from the process that owns the root (see
    GitStore(own=)).
    """
    removed = []
    root = Path(root)

    def drop(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path.relative_to(root)))

    for stale in (root / "tmp").iterdir() if (root / "tmp").is_dir() else []:
        drop(stale)
    for tmp in root.glob("lfs/objects/*/*/.*.tmp"):
        drop(tmp)
    for ns in (root / "repos").glob("*/*"):
        if not ns.is_dir() or ns.is_symlink():
            continue
        for entry in ns.iterdir():
            if entry.name.startswith(".") and entry.name.endswith((".creating", ".migrating")):
                drop(entry)
            elif entry.name.startswith(".") and entry.name.endswith(".moving"):
                _finish_move(entry)  # a whole repo between two names: never dropped
        for repo in ns.glob("*.git"):
            for lock in repo.glob("refs/**/*.lock"):
                drop(lock)
            for lock in (repo / "packed-refs.lock", repo / "config.lock", repo / "HEAD.lock"):
                if lock.exists():
                    drop(lock)
            for tmp in repo.glob("objects/pack/tmp*"):
                drop(tmp)
            for tmp in repo.glob(".*.tmp"):
                drop(tmp)
    for tmp in root.glob("cache/blobs/.*.tmp"):
        drop(tmp)
    for tmp in root.glob(".*.tmp"):
        drop(tmp)
    if removed:
        logger.info("local hub: removed %d leftovers of an earlier run under %s", len(removed), root)
    return removed
