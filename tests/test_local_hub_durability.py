"""What the local hub keeps on disk (issue 14): growth with the change, private files, fsync order, no leftovers,
gc of what nothing references, fsck of what was damaged behind its back."""

import hashlib
import os
import stat

import httpx
import pytest

TOKEN = "hf_durability_token_0123456789"


@pytest.fixture
def hub(tmp_path):
    from hub_tools.local_hub.server import start_background

    running = start_background(tmp_path / "root", tokens=[TOKEN])
    yield running
    running.stop()


@pytest.fixture
def api(hub):
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub.url, token=TOKEN)


def _disk(root) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def test_a_commit_stores_what_it_changes_not_the_whole_file_map(hub, api):
    from huggingface_hub import CommitOperationAdd

    api.create_repo("babyhub/many")
    api.create_commit(
        "babyhub/many",
        [CommitOperationAdd(f"data/part-{i // 50:03d}/row-{i % 50:02d}.json", b"{}") for i in range(2000)],
        commit_message="2,000 files in 40 folders",
    )
    before = _disk(hub.root)
    for i in range(10):
        api.upload_file(
            path_or_fileobj=f"v{i}".encode(), path_in_repo="data/part-007/row-00.json", repo_id="babyhub/many"
        )
    per_commit = (_disk(hub.root) - before) / 10
    # The old store wrote the 2,000-entry file map again per commit (~300 KB). Git writes the blob, the folders on
    # its path (the root, data/ with 40 entries, part-007/ with 50) and the commit: a few KB.
    assert per_commit < 10_000, per_commit
    assert len(api.list_repo_commits("babyhub/many")) == 12


def test_the_root_and_what_it_holds_are_private_whatever_the_umask(tmp_path):
    from huggingface_hub import HfApi

    from hub_tools.local_hub.server import start_background

    old_umask = os.umask(0o022)
    try:
        hub = start_background(tmp_path / "root", tokens=[TOKEN])
        try:
            api = HfApi(endpoint=hub.url, token=TOKEN)
            api.create_repo("babyhub/secret", private=True)
            api.upload_file(path_or_fileobj=os.urandom(50_000), path_in_repo="w.safetensors", repo_id="babyhub/secret")
        finally:
            hub.stop()
    finally:
        os.umask(old_umask)
    root = tmp_path / "root"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    private_files = [
        *root.glob("lfs/objects/*/*/*"),
        *root.glob("repos/*/*/*.git/objects/pack/*"),
        root / "upload.key",
    ]
    private_files += list(root.glob("repos/*/*/*.git/babyhub.json"))
    assert len(private_files) > 4
    for path in private_files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_an_upload_is_fsynced_before_the_commit_that_names_it_and_that_before_the_ref(hub, api, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    api.create_repo("babyhub/durable")
    monkeypatch.setattr(os, "fsync", recording_fsync)
    weights = os.urandom(100_000)
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id="babyhub/durable")
    monkeypatch.setattr(os, "fsync", real_fsync)
    sha = hashlib.sha256(weights).hexdigest()
    blob = next(i for i, p in enumerate(synced) if p.startswith(str(hub.root / "tmp")) or p.endswith(sha))
    blob_dir = next(i for i, p in enumerate(synced) if p.endswith(f"lfs/objects/{sha[:2]}/{sha[2:4]}"))
    pack = next(i for i, p in enumerate(synced) if "/objects/pack/tmp_pack_" in p)
    ref = next(i for i, p in enumerate(synced) if p.endswith("refs/heads/main.lock"))
    ref_dir = next(i for i, p in enumerate(synced) if p.endswith("durable.git/refs/heads") and i > ref)
    assert blob < blob_dir < pack < ref < ref_dir, synced


def test_leftovers_of_a_crash_are_removed_at_start(tmp_path, api, hub):
    from hub_tools.local_hub.server import start_background

    api.create_repo("babyhub/tidy")
    hub.stop()
    root = hub.root
    leftovers = [
        root / "tmp" / "deleted-0123abcd" / "repo.json",  # a repo deleted half-way (the old store's name too)
        root / "tmp" / "0123456789abcdef",  # an upload cut by the crash
        root / "repos" / "models" / "babyhub" / ".other.git.0123.creating" / "HEAD",  # a repo created half-way
        root / "lfs" / "objects" / "ab" / "cd" / ".abcd.0123.tmp",
        root / "repos" / "models" / "babyhub" / "tidy.git" / "refs" / "heads" / "main.lock",  # would block commits
        root / ".FORMAT.0123.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left over")
    again = start_background(root, tokens=[TOKEN])
    try:
        for path in leftovers:
            assert not path.exists(), path
        assert not (root / "repos" / "models" / "babyhub" / ".other.git.0123.creating").exists()
        response = httpx.post(
            f"{again.url}/api/models/babyhub/tidy/commit/main",
            headers={"authorization": f"Bearer {TOKEN}"},
            content=b'{"key": "header", "value": {"summary": "after the crash"}}\n'
            b'{"key": "file", "value": {"path": "a.txt", "content": "YQ=="}}',
        )
        assert response.status_code == 200, response.text
    finally:
        again.stop()


def test_gc_removes_the_uploads_no_commit_kept_and_fsck_stays_clean(hub, api):
    from huggingface_hub import CommitOperationAdd

    from hub_tools.local_hub.maintenance import fsck, gc

    api.create_repo("babyhub/refused")
    kept = os.urandom(30_000)
    api.upload_file(path_or_fileobj=kept, path_in_repo="kept.safetensors", repo_id="babyhub/refused")
    head = api.model_info("babyhub/refused").sha
    api.upload_file(path_or_fileobj=b"moves the head", path_in_repo="x.txt", repo_id="babyhub/refused")
    orphan = os.urandom(40_000)
    with pytest.raises(Exception, match="412|A commit has happened"):  # uploaded, then the commit is refused
        api.create_commit(
            "babyhub/refused",
            [CommitOperationAdd("orphan.safetensors", orphan)],
            commit_message="stale",
            parent_commit=head,
        )
    pool = hub.root / "lfs" / "objects"
    orphan_sha, kept_sha = hashlib.sha256(orphan).hexdigest(), hashlib.sha256(kept).hexdigest()
    assert (pool / orphan_sha[:2] / orphan_sha[2:4] / orphan_sha).is_file()
    report = gc(hub.root, grace_seconds=3600)  # young: spared (its commit may still be on its way)
    assert (pool / orphan_sha[:2] / orphan_sha[2:4] / orphan_sha).is_file()
    report = gc(hub.root, grace_seconds=0)  # next to the running hub
    assert not (pool / orphan_sha[:2] / orphan_sha[2:4] / orphan_sha).exists()
    assert (pool / kept_sha[:2] / kept_sha[2:4] / kept_sha).is_file()
    assert report.lfs_objects_removed >= 1
    assert fsck(hub.root).ok
    assert api.hf_hub_download("babyhub/refused", "kept.safetensors") and True


def test_fsck_finds_a_blob_truncated_behind_its_back(hub, api):
    from hub_tools.local_hub.maintenance import fsck

    api.create_repo("babyhub/damaged")
    weights = os.urandom(60_000)
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id="babyhub/damaged")
    api.upload_file(path_or_fileobj=b'{"a": 1}', path_in_repo="config.json", repo_id="babyhub/damaged")
    assert fsck(hub.root).ok
    sha = hashlib.sha256(weights).hexdigest()
    path = hub.root / "lfs" / "objects" / sha[:2] / sha[2:4] / sha
    with open(path, "r+b") as f:
        f.truncate(1000)
    report = fsck(hub.root)
    assert not report.ok and len(report.problems) == 1  # it stops at the first inconsistency
    problem = str(report.problems[0])
    assert "model babyhub/damaged" in problem and "model.safetensors" in problem and sha in problem
    download = httpx.get(f"{hub.url}/babyhub/damaged/resolve/main/model.safetensors")
    assert download.status_code == 500 and "hub fsck" in download.json()["error"]  # never a short download
