"""fsck and gc of a git-backed hub root, and the leftovers a new store removes at start."""

import os
import stat
import subprocess
import time

import pytest


@pytest.fixture
def store(tmp_path):
    from hub_tools.local_hub.gitstore import GitStore

    store = GitStore(tmp_path / "root")
    yield store
    store.close()


def _baby(store, repo_id="babyhub/baby"):
    """A model with a plain file, an LFS weight, a branch and a tag; (repo, plain bytes, weight bytes)."""
    repo = store.create_repo("model", repo_id, private=False, sdk=None, author="babyhub")
    plain, weights = os.urandom(6000), os.urandom(50_000)
    oid = store.commit(
        repo,
        "main",
        [("add", "data/table.csv", {"content": plain}), ("add", "model.safetensors", {"content": weights})],
        title="Upload",
        message="",
        author="babyhub",
    )
    store.create_ref(repo, "branches", "checkpoint-2000", oid)
    store.create_ref(repo, "tags", "v1", oid)
    return repo, plain, weights


def test_fsck_passes_on_a_sound_root_and_git_agrees(store):
    from hub_tools.local_hub.maintenance import fsck

    repo, _, _ = _baby(store)
    report = fsck(store.root)
    assert report.ok, report.problems
    assert (report.repos, report.commits, report.lfs_objects) == (1, 2, 1) and report.blobs >= 3
    # the repos are real git repositories: git's own fsck finds nothing wrong with them
    proc = subprocess.run(["git", "-C", str(repo.dir), "fsck", "--strict", "--no-dangling"], capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_fsck_finds_a_truncated_lfs_object(store):
    from hub_tools.local_hub.maintenance import fsck

    _, _, weights = _baby(store)
    import hashlib

    path = store.lfs_path(hashlib.sha256(weights).hexdigest())
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.truncate(1000)
    report = fsck(store.root)
    assert not report.ok and len(report.problems) == 1  # it stops at the first
    problem = str(report.problems[0])
    assert "model babyhub/baby" in problem and "file model.safetensors" in problem and "has 1000 bytes" in problem
    # a same-size corruption is only seen by hashing
    with open(path, "r+b") as f:
        f.truncate(0)
        f.write(b"\0" * len(weights))
    assert "damaged" in str(fsck(store.root).problems[0])
    assert fsck(store.root, hash_lfs=False).ok


def test_fsck_finds_a_lying_size_cache(store):
    from hub_tools.local_hub.gitplumbing import read_blobinfo, write_blobinfo
    from hub_tools.local_hub.maintenance import fsck

    repo, plain, _ = _baby(store)
    infos = read_blobinfo(repo.dir / "babyhub-blobinfo")
    oid = store.tree_view(repo, store.resolve(repo, "main")).file("data/table.csv").oid
    infos[oid] = (len(plain) + 1, None)
    write_blobinfo(repo.dir / "babyhub-blobinfo", infos)
    problem = str(fsck(store.root).problems[0])
    assert "file data/table.csv" in problem and "babyhub-blobinfo" in problem


def test_fsck_finds_a_damaged_or_truncated_git_blob(store):
    from hub_tools.local_hub.maintenance import fsck

    repo, plain, _ = _baby(store)
    handle = store._handle(repo)
    blob_id = store.tree_view(repo, store.resolve(repo, "main")).file("data/table.csv").oid
    pack = next(p for p in handle.git.object_store.packs if blob_id.encode() in p)
    offset = pack.index.object_offset(blob_id.encode())
    pack_file = pack._basename + ".pack"
    os.chmod(pack_file, 0o600)
    with open(pack_file, "r+b") as f:  # overwrite the middle of the blob's compressed bytes
        f.seek(offset + 200)
        f.write(os.urandom(64))
    report = fsck(store.root, stop_at_first=False)
    assert not report.ok
    first = str(report.problems[0])
    assert "model babyhub/baby" in first and "file data/table.csv" in first and blob_id in first, first
    assert any("pack pack-" in str(p) for p in report.problems)  # the pack's checksum no longer matches
    with open(pack_file, "r+b") as f:  # and a pack cut short in the middle of the blob
        f.truncate(offset + 100)
    assert not fsck(store.root).ok


def test_gc_removes_only_unreferenced_objects_older_than_the_grace_period(store):
    from hub_tools.local_hub.gitplumbing import read_blobinfo
    from hub_tools.local_hub.gitstore import GitStore
    from hub_tools.local_hub.maintenance import fsck, gc

    repo, plain, weights = _baby(store)
    staged = store.put_lfs_bytes(b"an upload whose commit never came")
    head = store.resolve(repo, "main")
    doomed = store.commit(
        repo,
        "checkpoint-2000",
        [("add", "only-here.txt", {"content": b"on a branch about to go"})],
        title="soon unreachable",
        message="",
        author="b",
    )
    doomed_blob = store.tree_view(repo, doomed).file("only-here.txt").oid
    store.delete_ref(repo, "branches", "checkpoint-2000")
    assert store.commit_info(repo, doomed) is not None
    assert doomed_blob in read_blobinfo(repo.dir / "babyhub-blobinfo")

    young = gc(store.root, grace_seconds=3600)
    assert (young.lfs_objects_removed, young.git_objects_dropped) == (0, 0)  # all young: nothing goes
    assert store.has_lfs_object(staged.oid)

    later = time.time() + 7200
    report = gc(store.root, grace_seconds=3600, now=later)
    assert report.lfs_objects_removed == 1 and not store.has_lfs_object(staged.oid)
    assert report.git_objects_dropped == 3  # the commit, its tree and its blob
    with GitStore(store.root, own=False) as fresh:  # (an open store may still read it from a pack it holds open)
        assert fresh.commit_info(repo, doomed) is None
    # everything referenced is still there, read by the store that was open during gc
    view = store.tree_view(repo, head)
    assert b"".join(store.read_file(repo, view.file("data/table.csv"))) == plain
    assert b"".join(store.read_file(repo, view.file("model.safetensors"))) == weights
    assert fsck(store.root).ok
    assert gc(store.root, grace_seconds=3600, now=later) == type(report)()  # a second run finds nothing
    records = set(read_blobinfo(repo.dir / "babyhub-blobinfo"))
    assert doomed_blob not in records and records <= {e.oid for e in view.list(recursive=True)}


def test_a_reused_lfs_object_is_spared_by_gc(store):
    from hub_tools.local_hub.maintenance import gc

    repo, _, _ = _baby(store)
    staged = store.put_lfs_bytes(b"uploaded long ago, committed now")
    old = time.time() - 10 * 3600
    os.utime(store.lfs_path(staged.oid), (old, old))
    store.commit(
        repo,
        "main",
        [("add", "late.bin", {"sha256": staged.oid, "size": staged.size, "lfs": True})],
        title="late",
        message="",
        author="b",
    )
    assert gc(store.root, grace_seconds=3600).lfs_objects_removed == 0
    assert store.has_lfs_object(staged.oid)


def test_a_new_store_removes_the_leftovers_of_a_crash(tmp_path):
    from hub_tools.local_hub.gitstore import GitStore

    root = tmp_path / "root"
    with GitStore(root) as store:
        repo, _, _ = _baby(store)
    leftovers = [
        root / "tmp" / "upload-in-flight",
        repo.dir.parent / ".other.git.0123.creating",
        repo.dir / "refs" / "heads" / "main.lock",
        repo.dir / "objects" / "pack" / "tmp_pack_abc",
        root / "lfs" / "objects" / "ab" / "cd" / ".abcd.0123.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".creating":
            path.mkdir()
        else:
            path.write_bytes(b"half")
    os.chmod(root, 0o755)
    with GitStore(root) as store:
        assert not [p for p in leftovers if p.exists()]
        assert stat.S_IMODE(root.stat().st_mode) == 0o700  # tightened on open
        store.signing_key()
        assert stat.S_IMODE((root / "upload.key").stat().st_mode) == 0o600
        repo = store.get_repo("model", "babyhub/baby")
        store.commit(repo, "main", [("add", "x", {"content": b"x"})], title="t", message="", author="b")
        # a second process (fsck next to a server) does not clean what the owner may be writing
        (root / "tmp" / "in-flight").write_bytes(b"x")
        with GitStore(root, own=False):
            assert (root / "tmp" / "in-flight").exists()
