"""The git-backed store (gitstore.GitStore) and the LFS rule (lfs.py), without a server."""

import hashlib
import os
import subprocess
import threading

import pytest

from hub_tools.local_hub import lfs


@pytest.fixture
def store(tmp_path):
    from hub_tools.local_hub.gitstore import GitStore

    store = GitStore(tmp_path / "root")
    yield store
    store.close()


@pytest.fixture
def repo(store):
    return store.create_repo("model", "babyhub/baby", private=False, sdk=None, author="babyhub")


def add(path, content: bytes):
    return ("add", path, {"content": content})


def commit(store, repo, *ops, branch="main", **kw):
    return store.commit(repo, branch, list(ops), title=kw.pop("title", "t"), message="", author="babyhub", **kw)


def git(repo, *args) -> str:
    return subprocess.run(["git", "-C", str(repo.dir), *args], check=True, capture_output=True, text=True).stdout


# ---- the LFS rule ------------------------------------------------------------------------------------------------
def test_pointer_round_trip_and_strictness():
    pointer = lfs.Pointer("a" * 64, 1234)
    assert lfs.parse_pointer(pointer.encode()) == pointer and pointer.pointer_size == len(pointer.encode())
    for bad in (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"a" * 64 + b"\nsize 01\n", b"hello"):
        assert lfs.parse_pointer(bad) is None


def test_gitattributes_patterns_match_as_git_check_attr_does(tmp_path):
    attrs = (
        "*.bin filter=lfs diff=lfs merge=lfs -text\n"
        "weights/** filter=lfs\n"
        "/top.dat filter=lfs\n"
        "docs/*.pdf filter=lfs\n"
        "*.bin.txt -filter\n"
        "sp\\ ace[[:space:]]x.y filter=lfs\n"
        "[ab]?.npy filter=lfs\n"
    )
    paths = [
        "a.bin", "deep/dir/a.bin", "weights/x", "weights/sub/y.txt", "x/weights/y", "top.dat", "sub/top.dat",
        "docs/a.pdf", "docs/sub/a.pdf", "a.bin.txt", "sp ace x.y", "a1.npy", "c1.npy", "ab1.npy",
    ]  # fmt: skip
    repo = tmp_path / "attrs"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitattributes").write_text(attrs)
    out = subprocess.run(
        ["git", "-C", str(repo), "check-attr", "filter", "--", *paths], check=True, capture_output=True, text=True
    ).stdout
    expected = {line.rsplit(": filter: ", 1)[0]: line.endswith(": lfs") for line in out.splitlines()}
    rule = lfs.LfsRule.from_gitattributes(attrs)
    assert {p: rule.tracked(p) for p in paths} == expected
    # a tracking line the store writes for one path matches that path only
    line = lfs.gitattributes_line("odd [dir]/w *.x")
    assert lfs.LfsRule.from_gitattributes(line).tracked("odd [dir]/w *.x")
    assert not lfs.LfsRule.from_gitattributes(line).tracked("odd d/w a.x")


# ---- commits as git commits ----------------------------------------------------------------------------------------
def test_commits_are_git_commits_with_real_ids_and_shared_trees(store, repo):
    files = [add(f"data/d{i % 20:02d}/f{i:04d}.txt", f"row {i}\n".encode()) for i in range(2000)]
    big = commit(store, repo, *files)
    before = {p.name for p in (repo.dir / "objects" / "pack").glob("*.pack")}
    one = commit(store, repo, add("data/d03/f0003.txt", b"changed\n"), title="one file")
    new_packs = [p for p in (repo.dir / "objects" / "pack").glob("*.pack") if p.name not in before]
    assert len(new_packs) == 1
    index = (new_packs[0].with_suffix(".idx")).read_bytes()
    shown = subprocess.run(["git", "show-index"], input=index, check=True, capture_output=True).stdout.splitlines()
    assert len(shown) == 5  # the blob, data/d03, data, the root tree and the commit: not the 2,000-file map

    # git itself reads the store's repo: same commits, same tree ids and blob ids as the store reports
    assert git(repo, "rev-list", "main").split() == [one, big, store.history(repo, big)[-1]["id"]]
    listing = {line.split("\t")[1]: line.split()[2] for line in git(repo, "ls-tree", "-r", "-t", "main").splitlines()}
    view = store.tree_view(repo, one)
    entries = view.list(recursive=True)
    assert {e.path: e.oid for e in entries} == listing
    assert git(repo, "log", "-1", "--format=%s", "main").strip() == "one file"
    assert git(repo, "show", "main:data/d03/f0003.txt") == "changed\n"
    subprocess.run(["git", "-C", str(repo.dir), "fsck", "--strict"], check=True, capture_output=True)


def test_lfs_files_are_pointers_in_git_and_tracked_by_gitattributes(store, repo):
    weights, big, small_bin = os.urandom(5000), b"\1" * (lfs.LFS_THRESHOLD + 1), b"\0\1\2"
    staged = store.put_lfs_bytes(b"uploaded through the LFS batch API")
    oid = commit(
        store,
        repo,
        add("model.safetensors", weights),  # extension
        add("logs/big.log", big),  # over 10 MB
        add("tok/a.bin", small_bin),  # .gitattributes (*.bin)
        ("add", "extra/blob.weird", {"sha256": staged.oid, "size": staged.size, "lfs": True}),  # uploaded as LFS
        add("README.md", b"# hi\n"),
    )
    view = store.tree_view(repo, oid)
    for path, content in (("model.safetensors", weights), ("logs/big.log", big), ("tok/a.bin", small_bin)):
        entry = view.file(path)
        pointer = lfs.Pointer(hashlib.sha256(content).hexdigest(), len(content))
        assert entry.lfs == pointer and entry.size == len(content)
        assert entry.oid == git(repo, "rev-parse", f"main:{path}").strip()  # the pointer's blob id, as on the Hub
        assert git(repo, "show", f"main:{path}").encode() == pointer.encode()
        assert entry.to_json()["lfs"] == {
            "oid": pointer.oid,
            "size": len(content),
            "pointerSize": len(pointer.encode()),
        }
        assert b"".join(store.read_file(repo, entry)) == content
    assert view.file("README.md").lfs is None
    attrs = store.read_blob(repo, view.file(".gitattributes").oid)
    assert attrs.startswith(lfs.DEFAULT_GITATTRIBUTES)  # kept, plus one line per LFS file it did not track
    assert attrs[len(lfs.DEFAULT_GITATTRIBUTES) :] == b"".join(
        lfs.gitattributes_line(p) for p in ("logs/big.log", "extra/blob.weird")
    )
    rule = lfs.LfsRule.from_gitattributes(attrs)
    assert all(rule.tracked(p) for p in ("model.safetensors", "logs/big.log", "tok/a.bin", "extra/blob.weird"))


def test_compare_and_swap_conflicts_and_missing_entries(store, repo):
    from hub_tools.local_hub.gitstore import HubError

    head = store.resolve(repo, "main")
    commit(store, repo, add("a/b.txt", b"x"), parent_commit=head)
    cases = [
        (lambda: commit(store, repo, add("c.txt", b"y"), parent_commit=head), 412, "A commit has happened"),
        (lambda: commit(store, repo, add("c.txt", b"y"), parent_commit=12), 400, "must be a 40-character commit id"),
        (lambda: commit(store, repo, add("a", b"y")), 400, "a folder of that name exists"),
        (lambda: commit(store, repo, add("a/b.txt/c", b"y")), 400, "'a/b.txt' is a file"),
        (lambda: commit(store, repo, ("delete", "nope.txt", None)), 404, "File to delete not found: nope.txt"),
        (lambda: commit(store, repo, ("delete_folder", "nope", None)), 404, "Folder to delete not found"),
        (lambda: commit(store, repo, add("x/.git/config", b"y")), 400, "'.git' is not allowed"),
        (lambda: commit(store, repo, add("c.txt", b"y"), branch="nope"), 404, "nope is not a branch"),
    ]
    for call, status, message in cases:
        with pytest.raises(HubError) as err:
            call()
        assert err.value.status == status and message in err.value.message, err.value.message
    assert store.history(repo, store.resolve(repo, "main"))[0]["title"] == "t"  # nothing half-written
    oid = commit(store, repo, ("delete_folder", "a/", None))
    assert [e.path for e in store.tree_view(repo, oid).list(recursive=True)] == [".gitattributes"]


def test_refs_resolve_and_the_old_interface(store, repo):
    from hub_tools.local_hub.gitstore import HubError

    oid = commit(store, repo, add("cfg.json", b"{}"), add("w.safetensors", b"\0" * 10))
    store.create_ref(repo, "branches", "checkpoint-2000", oid)
    store.create_ref(repo, "tags", "v1", oid)
    for rev in ("main", "refs/heads/main", "checkpoint-2000", "v1", "refs/tags/v1", oid):
        assert store.resolve(repo, rev) == oid
    for bad in ("nope", "0" * 40, "refs/heads/nope"):
        with pytest.raises(HubError) as err:
            store.resolve(repo, bad)
        assert err.value.code == "RevisionNotFound"
    with pytest.raises(HubError, match="already exists"):
        store.create_ref(repo, "tags", "checkpoint-2000", oid)
    with pytest.raises(HubError, match="conflicts with existing reference"):
        store.create_ref(repo, "branches", "v1/x", oid)
    with pytest.raises(HubError, match="Cannot delete the main branch"):
        store.delete_ref(repo, "branches", "main")
    store.delete_ref(repo, "tags", "v1")
    assert store.refs(repo) == {"branches": {"main": oid, "checkpoint-2000": oid}, "tags": {}, "pulls": {}}

    # storage.Store's shapes: a commit dict whose `files` maps paths to {sha256, size, sha1, lfs}
    old = store.get_commit(repo, oid)
    assert set(old) == {"id", "parents", "title", "message", "author", "date", "files"}
    assert sorted(old["files"]) == [".gitattributes", "cfg.json", "w.safetensors"] and "cfg" not in old["files"]
    assert dict(old["files"]["cfg.json"]) == {
        "sha256": hashlib.sha256(b"{}").hexdigest(),
        "size": 2,
        "sha1": git(repo, "rev-parse", "main:cfg.json").strip(),
        "lfs": False,
    }
    assert store.blob_path(old["files"]["cfg.json"]["sha256"]).read_bytes() == b"{}"
    weights = old["files"]["w.safetensors"]
    assert weights["lfs"] and store.blob_path(weights["sha256"]).read_bytes() == b"\0" * 10
    assert store.get_commit(repo, "f" * 40) is None
    other = store.create_repo("dataset", "babyhub/baby", private=True, sdk=None, author="b")
    assert store.get_commit(other, oid) is None  # a commit of another repo is not this one's
    assert [r.repo_id for r in store.list_repos("model")] == ["babyhub/baby"]


def test_nothing_outside_the_root_is_listed_or_opened(store, repo, tmp_path):
    outside = tmp_path / "outside"
    (outside / "stolen.git").mkdir(parents=True)
    (outside / "stolen.git" / "babyhub.json").write_text('{"id": "x/stolen", "private": false}')
    (store.root / "repos" / "models" / "evil").symlink_to(outside)
    assert [r.repo_id for r in store.list_repos("model")] == ["babyhub/baby"]
    from hub_tools.local_hub.gitstore import HubError

    with pytest.raises(HubError) as err:
        store.get_repo("model", "evil/stolen")
    assert err.value.code == "RepoNotFound"


def test_trees_are_parsed_once_and_listings_built_once(store, repo):
    oid = commit(store, repo, *[add(f"d{i % 5}/f{i}.txt", b"%d" % i) for i in range(200)])
    handle = store._handle(repo)
    view = store.tree_view(repo, oid)
    first = [e.to_json() for e in view.list(recursive=True)]
    reads = []
    original = handle.read_raw
    handle.read_raw = lambda sha: reads.append(sha) or original(sha)
    try:
        again = store.tree_view(repo, oid)
        assert [e.to_json() for e in again.list(recursive=True)] == first
        assert again.dirs() == {f"d{i}" for i in range(5)}
        assert [e.path for e in again.paths_info(["d1/f1.txt", "d2", "missing", "d1/f1.txt"])] == ["d1/f1.txt", "d2"]
        assert reads == []  # served from the caches: no object read, no parse
    finally:
        handle.read_raw = original


def test_concurrent_commits_to_one_branch_all_land(store, repo):
    errors = []

    def writer(n):
        try:
            for i in range(5):
                commit(store, repo, add(f"w{n}/f{i}.txt", b"%d" % i), title=f"w{n}-{i}")
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    history = store.history(repo, store.resolve(repo, "main"))
    assert len(history) == 1 + 6 * 5
    files = store.tree_view(repo, history[0]["id"]).files()
    assert len(files) == 1 + 30


def test_a_commit_is_fsynced_pack_then_ref_then_folders(store, repo, monkeypatch):
    """Durability order: the pack (blobs, trees, commit) and its folder reach the disk before the ref moves."""
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    commit(store, repo, add("a.txt", b"a"), add("w.safetensors", b"\0" * 64))
    pool_dirs = (str(store.root / "lfs"), str(store.root / "tmp"))
    pool = [i for i, p in enumerate(synced) if p.startswith(pool_dirs)]
    pack = next(i for i, p in enumerate(synced) if "/objects/pack/tmp_pack_" in p)
    pack_dir = next(i for i, p in enumerate(synced) if p.endswith("/objects/pack") and i > pack)
    ref = next(i for i, p in enumerate(synced) if p.endswith("refs/heads/main.lock"))
    ref_dir = next(i for i, p in enumerate(synced) if p.endswith("refs/heads") and i > ref)
    assert pool and max(pool) < pack < pack_dir < ref < ref_dir, synced
