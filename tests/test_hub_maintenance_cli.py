"""`babyhub hub migrate`, `hub fsck` and `hub gc`: the maintenance library through the command line."""

import hashlib
import os

from hub_tools.cli import main
from tests.test_gitstore_maintenance import _baby, store  # noqa: F401  (a fixture)
from tests.test_gitstore_migrate import old_root  # noqa: F401  (a fixture)


def test_migrate_prints_each_repo_and_a_second_run_has_nothing_to_do(old_root, capsys):  # noqa: F811
    assert main(["hub", "migrate", "--root", str(old_root)]) == 0
    out = capsys.readouterr().out
    assert "  migrated: model babyhub/baby" in out and "  migrated: dataset babyhub/prefs" in out
    assert "migrated 3 repo(s) to git:" in out
    assert not (old_root / "blobs").exists()
    assert main(["hub", "migrate", "--root", str(old_root)]) == 0
    assert f"nothing to migrate: {old_root} is already a git-backed hub root" in capsys.readouterr().out
    assert main(["hub", "fsck", "--root", str(old_root)]) == 0
    assert "fsck passed: 3 repo(s)" in capsys.readouterr().out


def test_fsck_tells_an_old_root_to_migrate(old_root, capsys):  # noqa: F811
    assert main(["hub", "fsck", "--root", str(old_root)]) == 1
    out = capsys.readouterr().out
    assert "not a git-backed hub root" in out and "run `babyhub hub migrate`" in out
    assert (old_root / "blobs").is_dir()  # fsck changes nothing


def test_fsck_exits_1_on_a_truncated_lfs_object_naming_repo_and_file(store, capsys):  # noqa: F811
    _, _, weights = _baby(store)
    assert main(["hub", "fsck", "--root", str(store.root)]) == 0
    assert "fsck passed: 1 repo(s), 2 commit(s)" in capsys.readouterr().out
    path = store.lfs_path(hashlib.sha256(weights).hexdigest())
    os.chmod(path, 0o600)
    with open(path, "r+b") as f:
        f.truncate(1000)
    assert main(["hub", "fsck", "--root", str(store.root)]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("  problem: ")]
    assert len(problems) == 1 and "model babyhub/baby" in problems[0] and "model.safetensors" in problems[0]
    assert "fsck failed after" in out
    # without hashing, a same-size corruption passes; the size check still catches the truncation
    assert main(["hub", "fsck", "--root", str(store.root), "--no-hash-lfs", "--all"]) == 1


def test_gc_removes_an_abandoned_upload_only_after_the_grace_period(store, capsys):  # noqa: F811
    _baby(store)
    staged = store.put_lfs_bytes(b"an upload whose commit never came")
    assert main(["hub", "gc", "--root", str(store.root)]) == 0
    assert "0 LFS object(s) removed" in capsys.readouterr().out and store.has_lfs_object(staged.oid)
    old = os.stat(store.lfs_path(staged.oid)).st_mtime - 3 * 3600
    os.utime(store.lfs_path(staged.oid), (old, old))
    assert main(["hub", "gc", "--root", str(store.root), "--grace-hours", "2"]) == 0
    assert "1 LFS object(s) removed" in capsys.readouterr().out and not store.has_lfs_object(staged.oid)
    assert main(["hub", "fsck", "--root", str(store.root)]) == 0


def test_the_maintenance_commands_refuse_a_missing_root_and_a_negative_grace(tmp_path, capsys):
    for command in ("migrate", "fsck", "gc"):
        assert main(["hub", command, "--root", str(tmp_path / "nowhere")]) == 2
        err = capsys.readouterr().err
        assert f"babyhub hub {command}: error:" in err or "babyhub hub: error:" in err
        assert f"{tmp_path / 'nowhere'} is not a folder: give the local hub's storage folder." in err
    assert main(["hub", "gc", "--root", str(tmp_path), "--grace-hours", "-1"]) == 2
    assert "--grace-hours must be 0 or more, not -1" in capsys.readouterr().err


def test_migrate_refuses_a_folder_that_is_no_hub_root_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["hub", "migrate", "--root", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"babyhub hub: error: {folder} is not a local hub root" in err
    assert "give the folder `babyhub hub serve --root` was given" in err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_gc_refuses_a_folder_that_is_no_git_hub_root_and_removes_nothing(tmp_path, old_root, capsys):  # noqa: F811
    home = tmp_path / "home"
    (home / "tmp").mkdir(parents=True)
    old_file = home / "tmp" / "draft.txt"
    old_file.write_text("keep me")
    os.utime(old_file, (0, 0))  # older than any grace period
    for root in (home, old_root):
        assert main(["hub", "gc", "--root", str(root), "--grace-hours", "0"]) == 2
        err = capsys.readouterr().err
        assert f"{root} is not a git-backed local hub root" in err and "babyhub hub serve --root" in err
    assert old_file.read_text() == "keep me"
