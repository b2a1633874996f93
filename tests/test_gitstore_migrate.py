"""Migration of a root written by today's server (the JSON store) into git repositories (issue 14)."""

import json
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

TOKEN = "hf_migrate_token_0123456789"
OLD_ROOT_ARCHIVE = Path(__file__).parent / "data" / "old_hub_root.tar.gz"


def _old_blob(root, sha256: str) -> bytes:
    return (root / "blobs" / sha256[:2] / sha256).read_bytes()


@pytest.fixture
def old_root(tmp_path):
    """A root written by the JSON-store server (babyhub before issue 14: main at 32ff397) through huggingface_hub.

    `tests/data/old_hub_root.tar.gz` was made by that server: a model `babyhub/baby` (create_repo; a commit of
    config.json, model.safetensors (LFS by extension), runs/x/events.out.tfevents.1 (LFS by binary sample) and a
    README with front matter; branch checkpoint-2000 with other weights, tagged v1; a commit on main changing
    config.json and deleting the README; a branch `gone` with one commit, then deleted), a private dataset
    `babyhub/prefs` (a parquet file and a README) and a gradio Space `babyhub/chat` (upload_file app.py).
    """
    with tarfile.open(OLD_ROOT_ARCHIVE) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "old-root"


def _old_state(root):
    """{(type, id): (repo.json, refs.json, {commit id: commit JSON})} of an old root."""
    state = {}
    for meta in root.glob("repos/*/*/*/repo.json"):
        repo_dir = meta.parent
        commits = {p.stem: json.loads(p.read_text()) for p in (repo_dir / "commits").glob("*.json")}
        key = (json.loads(meta.read_text())["type"], f"{repo_dir.parent.name}/{repo_dir.name}")
        state[key] = (json.loads(meta.read_text()), json.loads((repo_dir / "refs.json").read_text()), commits)
    return state


def _reachable(refs, commits):
    out, stack = set(), [*refs["branches"].values(), *refs["tags"].values()]
    while stack:
        oid = stack.pop()
        if oid not in out:
            out.add(oid)
            stack.extend(commits[oid]["parents"])
    return out


def _content(store, repo, entry) -> bytes:
    if entry.lfs:
        return store.lfs_path(entry.lfs.oid).read_bytes()
    return store.read_blob(repo, entry.oid)


def test_every_branch_tag_commit_and_file_survives_migration(old_root):
    from huggingface_hub import HfApi, hf_hub_download

    from hub_tools.local_hub import server
    from hub_tools.local_hub.gitstore import FileEntry, GitStore
    from hub_tools.local_hub.migrate import migrate_root

    old = _old_state(old_root)
    contents = {
        key: {
            oid: {path: _old_blob(old_root, e["sha256"]) for path, e in commit["files"].items()}
            for oid, commit in commits.items()
        }
        for key, (_, _, commits) in old.items()
    }
    assert len(old) == 3

    report = migrate_root(old_root)
    assert sorted(report.repos) == ["dataset babyhub/prefs", "model babyhub/baby", "space babyhub/chat"]
    assert report.dropped_commits == 1  # the deleted branch's commit
    assert not (old_root / "blobs").exists() and not list(old_root.glob("repos/*/*/*/repo.json"))
    assert stat.S_IMODE(old_root.stat().st_mode) == 0o700

    with GitStore(old_root) as store:
        for (repo_type, repo_id), (meta, refs, commits) in old.items():
            repo = store.get_repo(repo_type, repo_id)
            assert repo is not None and repo.meta == meta and repo.private == meta["private"]
            new_refs = store.refs(repo)
            assert set(new_refs["branches"]) == set(refs["branches"]) and set(new_refs["tags"]) == set(refs["tags"])
            for kind in ("branches", "tags"):
                for name, old_id in refs[kind].items():
                    assert new_refs[kind][name] == store.resolve(repo, old_id)  # old ids still resolve
            for old_id in _reachable(refs, commits):
                old_commit = commits[old_id]
                new_id = store.resolve(repo, old_id)
                new_commit = store.get_commit(repo, new_id)
                assert (new_commit["title"], new_commit["message"], new_commit["author"]) == (
                    old_commit["title"],
                    old_commit["message"],
                    old_commit["author"],
                )
                assert new_commit["date"][:19] == old_commit["date"][:19]
                assert new_commit["parents"] == [store.resolve(repo, p) for p in old_commit["parents"]]
                view = store.tree_view(repo, new_id)
                files = {e.path: e for e in view.list(recursive=True) if isinstance(e, FileEntry)}
                assert sorted(files) == sorted(old_commit["files"])
                for path, entry in files.items():
                    assert _content(store, repo, entry) == contents[(repo_type, repo_id)][old_id][path], path
                    assert bool(entry.lfs) == old_commit["files"][path]["lfs"]
            assert len(store.history(repo, store.resolve(repo, "main"))) == len(
                [c for c in _walk_first_parents(commits, refs["branches"]["main"])]
            )

    # the server serves the migrated root to the real client
    assert migrate_root(old_root).repos == []  # a second run finds nothing left to do
    hub = server.start_background(old_root, tokens=[TOKEN])
    try:
        (meta, refs, commits) = old[("model", "babyhub/baby")]
        v1 = refs["tags"]["v1"]
        weights = hf_hub_download("babyhub/baby", "model.safetensors", revision=v1, endpoint=hub.url, token=TOKEN)
        assert open(weights, "rb").read() == bytes(range(255, -1, -1)) * 40
        assert [c.title for c in HfApi(endpoint=hub.url, token=TOKEN).list_repo_commits("babyhub/baby")] == [
            "Bigger, no card",
            "Upload the baby",
            "initial commit",
        ]
        with pytest.raises(Exception, match="401|Repository Not Found|not found"):
            HfApi(endpoint=hub.url, token=False).list_repo_files("babyhub/prefs", repo_type="dataset")
    finally:
        hub.stop()


def _walk_first_parents(commits, oid):
    while oid:
        yield oid
        parents = commits[oid]["parents"]
        oid = parents[0] if parents else None


def test_a_missing_blob_stops_the_migration_of_that_repo_and_keeps_it_whole(old_root):
    from hub_tools.local_hub.migrate import MigrationError, migrate_root

    meta = next(old_root.glob("repos/models/babyhub/baby/repo.json"))
    commit = next(c for c in (meta.parent / "commits").glob("*.json") if "config.json" in c.read_text())
    entry = json.loads(commit.read_text())["files"]["config.json"]
    blob = old_root / "blobs" / entry["sha256"][:2] / entry["sha256"]
    saved = blob.read_bytes()
    blob.unlink()
    with pytest.raises(
        MigrationError, match=r"model babyhub/baby: file 'config.json' of commit [0-9a-f]{40}.*missing"
    ):
        migrate_root(old_root)
    assert meta.is_file() and (old_root / "blobs").is_dir()  # nothing of the old repo was removed
    assert not list(meta.parent.parent.glob(".*.migrating"))  # nor a half-built one left behind
    blob.write_bytes(saved)
    report = migrate_root(old_root)  # run again once the blob is back: it finishes the job
    assert "model babyhub/baby" in report.repos + report.already_done
    assert not (old_root / "blobs").exists()


def test_gitstore_migrates_an_old_root_when_it_opens(old_root):
    from hub_tools.local_hub.gitstore import GitStore

    with GitStore(old_root) as store:
        repo = store.get_repo("dataset", "babyhub/prefs")
        view = store.tree_view(repo, store.resolve(repo, "main"))
        entry = view.file("data/train-00000-of-00001.parquet")
        assert entry.lfs is not None and entry.size == 3008
    shutil.rmtree(old_root)
