"""Publishing against the local hub with the real huggingface_hub client, including a flaky hub."""

import os

import pytest

from hub_tools.errors import BabyhubError
from hub_tools.hub import publish
from hub_tools.hub.publish import push_files, push_folder


@pytest.fixture
def api(local_hub):
    from huggingface_hub import HfApi

    return HfApi()


@pytest.fixture
def faults(local_hub, monkeypatch):
    monkeypatch.setattr(publish, "BACKOFF_BASE", 0.01)
    local_hub.faults.clear()
    yield local_hub.faults
    local_hub.faults.clear()


def _write_model_folder(folder, seed: int):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(f'{{"seed": {seed}}}')
    (folder / "model.safetensors").write_bytes(os.urandom(300_000))  # an LFS file
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "notes.txt").write_text(f"checkpoint {seed}\n")
    return folder


def _remote_state(api, repo_id, revision="main"):
    """{path: content id} of a revision, and its number of commits."""
    files = {
        f.path: (f.lfs.sha256 if f.lfs else f.blob_id)
        for f in api.list_repo_tree(repo_id, revision=revision, recursive=True)
        if hasattr(f, "size") and hasattr(f, "lfs")
    }
    return files, len(api.list_repo_commits(repo_id, revision=revision))


def _expected(folder):
    return sorted([p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()] + [".gitattributes"])


def test_push_folder_creates_repo_commits_once_and_skips_unchanged(api, tmp_path):
    folder = _write_model_folder(tmp_path / "model", 1)
    first = push_folder(folder, "babyhub/publish-basic")
    assert first.commit_oid and len(first.commit_oid) == 40
    files, n_commits = _remote_state(api, "babyhub/publish-basic")
    assert sorted(files) == _expected(folder) and n_commits == 2
    assert push_folder(folder, "babyhub/publish-basic").commit_oid is None  # no empty commit
    assert _remote_state(api, "babyhub/publish-basic")[1] == 2
    # A re-push mirrors the folder: a removed file goes, a changed one is replaced, in one commit.
    (folder / "sub" / "notes.txt").unlink()
    (folder / "config.json").write_text('{"seed": 2}')
    third = push_folder(folder, "babyhub/publish-basic", commit_message="mirror")
    files, n_commits = _remote_state(api, "babyhub/publish-basic")
    assert "sub/notes.txt" not in files and n_commits == 3
    assert api.list_repo_commits("babyhub/publish-basic")[0].title == "mirror"
    assert third.commit_oid == api.model_info("babyhub/publish-basic").sha


def test_branches_start_from_first_commit_and_are_not_overwritten(api, tmp_path):
    repo = "babyhub/publish-branches"
    main = _write_model_folder(tmp_path / "main", 0)
    (main / "only-on-main.txt").write_text("main")
    push_folder(main, repo)
    ckpt = _write_model_folder(tmp_path / "ckpt", 2000)
    result = push_folder(ckpt, repo, revision="checkpoint-2000")
    assert result.revision == "checkpoint-2000" and result.commit_oid
    files, n_commits = _remote_state(api, repo, "checkpoint-2000")
    assert sorted(files) == _expected(ckpt) and n_commits == 2  # first commit + this one, nothing from main
    # Same content again: nothing to do. Other content: refused unless asked.
    assert push_folder(ckpt, repo, revision="checkpoint-2000").commit_oid is None
    other = _write_model_folder(tmp_path / "other", 4000)
    with pytest.raises(BabyhubError, match="already holds other content"):
        push_folder(other, repo, revision="checkpoint-2000")
    assert push_folder(other, repo, revision="checkpoint-2000", overwrite_branch=True).commit_oid
    assert _remote_state(api, repo, "checkpoint-2000")[1] == 3


def test_push_files_adds_and_keeps_the_rest(api, tmp_path):
    repo = "babyhub/publish-files"
    push_folder(_write_model_folder(tmp_path / "m", 3), repo)
    card = tmp_path / "README.md"
    card.write_text("# card\n")
    result = push_files({"README.md": card, "extra/data.bin": b"\0\1\2" * 1000}, repo, commit_message="card")
    files, n_commits = _remote_state(api, repo)
    assert {"README.md", "extra/data.bin", "config.json", "model.safetensors"} <= set(files) and n_commits == 3
    assert result.commit_oid == api.model_info(repo).sha
    assert push_files({"README.md": card}, repo).commit_oid is None


def test_push_to_a_space_and_dataset_repo_types(api, tmp_path):
    space = tmp_path / "space"
    space.mkdir()
    (space / "README.md").write_text("---\ntitle: t\nsdk: gradio\napp_file: app.py\n---\n")
    (space / "app.py").write_text("print('hi')\n")
    result = push_folder(space, "babyhub/publish-space", repo_type="space")
    assert result.url.endswith("/spaces/babyhub/publish-space")
    assert api.space_info("babyhub/publish-space").sdk == "gradio"
    data = tmp_path / "ds"
    (data / "data").mkdir(parents=True)
    (data / "data" / "train.csv").write_text("a,b\n1,2\n")
    (data / "data" / "skip.tmp").write_text("x")
    push_folder(data, "babyhub/publish-ds", repo_type="dataset", ignore_patterns=["*.tmp"])
    assert sorted(api.list_repo_files("babyhub/publish-ds", repo_type="dataset")) == [
        ".gitattributes",
        "data/train.csv",
    ]


@pytest.mark.parametrize(
    "target,action,times",
    [
        ("lfs_upload", "drop", 1),
        ("commit", "drop", 1),
        ("commit", "drop_after", 1),
        ("commit", "503", 2),
        ("preupload", "503", 2),
        ("lfs_batch", "drop", 1),
    ],
)
def test_push_survives_a_flaky_hub(api, faults, tmp_path, target, action, times):
    repo = f"babyhub/publish-fault-{target.replace('_', '-')}-{action.replace('_', '-')}"
    folder = _write_model_folder(tmp_path / "m", 7)
    faults.add(target, action, times=times)
    result = push_folder(folder, repo, revision="checkpoint-2000")
    assert faults.fired.count((target, action)) == times  # the fault really happened
    files, n_commits = _remote_state(api, repo, "checkpoint-2000")
    assert sorted(files) == _expected(folder)
    assert n_commits == 2  # the first commit + exactly one for this push, even when a commit "was lost"
    assert (
        result.commit_oid == api.list_repo_refs(repo).branches[0].target_commit
        or result.commit_oid
        == [b.target_commit for b in api.list_repo_refs(repo).branches if b.name == "checkpoint-2000"][0]
    )
    local = {p: f.sha256 for p, f in publish.read_folder_files(folder).items()}
    assert files["model.safetensors"] == local["model.safetensors"]
    if target != "lfs_upload":  # resumed: the LFS file went up once, however often the push was retried
        assert faults.counts["lfs_upload"] == 1


def test_push_gives_up_with_a_clear_error_after_max_retries(faults, tmp_path):
    folder = _write_model_folder(tmp_path / "m", 8)
    faults.add("commit", "503", times=10)
    with pytest.raises(BabyhubError, match="run the same push again"):
        push_folder(folder, "babyhub/publish-giveup", max_retries=2)
    assert faults.counts["lfs_upload"] == 1  # uploaded on the first attempt, never again
    faults.clear()
    assert push_folder(folder, "babyhub/publish-giveup").commit_oid  # the next run resumes:
    assert faults.counts["lfs_upload"] == 0 and faults.counts["commit"] == 1  # the stored LFS file is reused


def test_bad_folder_or_token_is_a_clear_error(local_hub, tmp_path):
    with pytest.raises(BabyhubError, match="not a folder"):
        push_folder(tmp_path / "missing", "babyhub/never")
    with pytest.raises(BabyhubError, match="refused the token"):
        push_folder(_write_model_folder(tmp_path / "m", 9), "babyhub/never", token="hf_not_a_valid_token")


def test_a_name_the_hub_would_refuse_is_refused_before_anything_is_sent(local_hub, tmp_path):
    from hub_tools.repos import InvalidName

    folder = _write_model_folder(tmp_path / "m", 10)
    before = sum(local_hub.faults.counts.values())  # every request the hub has seen, by kind
    with pytest.raises(InvalidName, match="invalid repo id 'babyhub/bad name'"):
        push_folder(folder, "babyhub/bad name")
    with pytest.raises(InvalidName, match=r"cannot push to babyhub/publish-names@a\.\.b: .*a push goes to a branch"):
        push_folder(folder, "babyhub/publish-names", revision="a..b")
    with pytest.raises(InvalidName, match="invalid repo type 'models'"):
        push_files({"x.txt": b"x"}, "babyhub/publish-names", repo_type="models")
    with pytest.raises(InvalidName, match="namespace 'datasets' is reserved"):
        push_files({"x.txt": b"x"}, "datasets/publish-names")
    assert sum(local_hub.faults.counts.values()) == before


def test_push_errors_are_typed_and_name_the_push(api, local_hub, tmp_path):
    repo = "babyhub/publish-typed"
    push_files({"a": b"a file"}, repo)
    with pytest.raises(
        publish.PushError, match=r"push of 1 file\(s\) to babyhub/publish-typed@main: the hub refused "
    ):
        push_files({"a/b": b"a file where a file is"}, repo)  # the hub's 400: a path cannot be a file and a folder
    api.create_tag(repo, tag="v1")
    with pytest.raises(publish.PushError, match=r"cannot push to babyhub/publish-typed@v1: it is a tag"):
        push_files({"b": b"b"}, repo, revision="v1")
    folder = _write_model_folder(tmp_path / "m", 11)
    push_folder(folder, repo, revision="checkpoint-2000")
    (folder / "config.json").write_text("{}")
    with pytest.raises(publish.BranchConflictError, match=f"other content than {folder}") as conflict:
        push_folder(folder, repo, revision="checkpoint-2000")
    assert "--" not in str(conflict.value)  # the library names the value, never a command-line flag
    with pytest.raises(publish.TokenRefusedError, match=f"push of {folder} to {repo}@main: the hub refused the token"):
        push_folder(folder, repo, token="hf_not_a_valid_token")
    with pytest.raises(publish.PushError, match="no files to push"):
        push_folder(folder, repo, allow_patterns=["*.nothing"])


def test_giving_up_is_a_retries_exhausted_error(faults, tmp_path):
    faults.add("commit", "503", times=3)
    with pytest.raises(publish.RetriesExhaustedError, match="failed after 2 attempts"):
        push_files({"x.txt": b"x"}, "babyhub/publish-exhausted", max_retries=1)


@pytest.fixture
def quick_client_retries(monkeypatch):
    """huggingface_hub retries an LFS PUT itself (5 times, 1 to 8 s apart): the same retries, milliseconds apart."""
    import functools

    import huggingface_hub.lfs
    from huggingface_hub.utils import http_backoff

    monkeypatch.setattr(
        huggingface_hub.lfs, "http_backoff", functools.partial(http_backoff, base_wait_time=0.01, max_wait_time=0.02)
    )


@pytest.mark.parametrize(
    "action,times",
    [
        ("403", 1),  # an expired transfer grant: the next attempt asks the batch API for a new one
        ("503", 6),  # more 5xx than huggingface_hub's own retries of the PUT
        ("drop", 6),  # the connection lost as often
    ],
)
def test_a_failed_lfs_transfer_is_judged_by_its_innermost_cause_and_retried(
    api, faults, quick_client_retries, tmp_path, action, times
):
    """huggingface_hub wraps the LFS PUT's failure in a RuntimeError; publish looks inside and retries (issue 14)."""
    repo = f"babyhub/publish-transfer-{action}"
    folder = _write_model_folder(tmp_path / "m", 12)
    faults.add("lfs_upload", action, times=times)
    result = push_folder(folder, repo)
    assert faults.fired.count(("lfs_upload", action)) == times
    files, n_commits = _remote_state(api, repo)
    assert n_commits == 2 and result.commit_oid == api.model_info(repo).sha
    assert files["model.safetensors"] == publish.read_folder_files(folder)["model.safetensors"].sha256


def test_a_push_that_finally_fails_is_one_line_from_the_cli_never_a_traceback(
    faults, quick_client_retries, tmp_path, capsys
):
    from hub_tools.cli import main

    folder = _write_model_folder(tmp_path / "m", 13)
    faults.add("lfs_upload", "503", times=1000)
    code = main(["push", str(folder), "--repo-id", "babyhub/publish-cli-fails", "--repo-type", "model"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("babyhub push: error: push of ") and err.rstrip().endswith("run the same push again")
    assert "RuntimeError" in err and "503" in err  # what huggingface_hub raised, and why
    faults.clear()
    assert main(["push", str(folder), "--repo-id", "babyhub/publish-cli-fails", "--repo-type", "model"]) == 0


def test_an_unexpected_error_mid_push_is_a_push_error_too(faults, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    def broken(*args, **kwargs):
        raise ValueError("something nobody expected")

    monkeypatch.setattr(HfApi, "create_commit", broken)
    with pytest.raises(publish.PushError, match="something nobody expected.*run the same push again$"):
        push_files({"x.txt": b"x"}, "babyhub/publish-unexpected")
