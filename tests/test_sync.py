"""`babyhub hub sync` between two local hubs: every branch and tag, same content, second run a no-op."""

import pytest

from hub_tools.cli import main
from hub_tools.hub.publish import push_folder
from tests.conftest import HUB_URL
from tests.fixtures.hub import serving

DEST_TOKEN = "hf_sync_dest_token"


@pytest.fixture
def dest_hub(tmp_path):
    with serving(tmp_path / "dest-root", tokens=[DEST_TOKEN]) as hub:
        yield hub


def _state(api, repo_id, repo_type="model"):
    """{branch or tag: {path: content id}} and {branch: [commit titles]}: what a mirror must reproduce."""
    refs = api.list_repo_refs(repo_id, repo_type=repo_type)
    contents, titles = {}, {}
    for ref in refs.branches + refs.tags:
        contents[ref.name] = {
            f.path: (f.lfs.sha256 if f.lfs else f.blob_id)
            for f in api.list_repo_tree(repo_id, repo_type=repo_type, revision=ref.target_commit, recursive=True)
            if hasattr(f, "lfs") and f.path != ".gitattributes"
        }
    for ref in refs.branches:
        titles[ref.name] = [c.title for c in api.list_repo_commits(repo_id, repo_type=repo_type, revision=ref.name)]
    return contents, titles


def _checkpoint(folder, step):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(f'{{"step": {step}}}')
    (folder / "model.safetensors").write_bytes(bytes([step % 251]) * (20_000 + step))
    return folder


def test_sync_copies_all_refs_and_a_second_run_is_a_no_op(local_hub, dest_hub, tmp_path, capsys):
    from huggingface_hub import HfApi

    src = HfApi()
    model, data = "babyhub/sync-model", "babyhub/sync-data"
    push_folder(_checkpoint(tmp_path / "main-1", 1), model, commit_message="first model")
    src.create_tag(model, tag="v1")
    push_folder(_checkpoint(tmp_path / "main-2", 2), model, commit_message="second model")
    push_folder(_checkpoint(tmp_path / "ck-2000", 2000), model, revision="checkpoint-2000")
    push_folder(_checkpoint(tmp_path / "ck-4000", 4000), model, revision="checkpoint-4000")
    (tmp_path / "ds" / "data").mkdir(parents=True)
    (tmp_path / "ds" / "data" / "train.csv").write_text("prompt,chosen\na,b\n")
    (tmp_path / "ds" / "README.md").write_text("---\nlicense: mit\n---\n# data\n")
    push_folder(tmp_path / "ds", data, repo_type="dataset")
    token_file = tmp_path / "dest-token"
    token_file.write_text(DEST_TOKEN + "\n")
    argv = [
        "hub",
        "sync",
        "--from",
        HUB_URL,
        "--to",
        dest_hub.url,
        "--repo",
        model,
        "--repo",
        f"datasets/{data}",
        "--to-token-file",
        str(token_file),
    ]

    assert main(argv) == 0
    first_out = capsys.readouterr().out
    dst = HfApi(endpoint=dest_hub.url, token=DEST_TOKEN)
    for repo_id, repo_type in ((model, "model"), (data, "dataset")):
        src_contents, src_titles = _state(src, repo_id, repo_type)
        dst_contents, dst_titles = _state(dst, repo_id, repo_type)
        assert dst_contents == src_contents  # every branch and tag, same files, same bytes
        assert dst_titles == src_titles  # history replayed commit by commit
    assert set(_state(dst, model)[0]) == {"main", "checkpoint-2000", "checkpoint-4000", "v1"}
    assert "2 repo(s)" in first_out and "already up to date" not in first_out

    refs_before = dst.list_repo_refs(model)
    assert main(argv) == 0
    assert "0 commit(s), 0 file(s) uploaded" in capsys.readouterr().out
    assert dst.list_repo_refs(model) == refs_before

    # New work at the source: only that is sent.
    push_folder(_checkpoint(tmp_path / "ck-6000", 6000), model, revision="checkpoint-6000")
    assert main(argv) == 0
    assert "1 commit(s), 2 file(s) uploaded, 1 branch(es)" in capsys.readouterr().out
    assert _state(dst, model)[0] == _state(src, model)[0]


def test_sync_rejects_bad_arguments(capsys):
    assert main(["hub", "sync", "--from", HUB_URL, "--to", HUB_URL]) == 2
    assert "same endpoint" in capsys.readouterr().err
    assert main(["hub", "sync", "--from", HUB_URL, "--to", "http://127.0.0.1:9", "--repo", "a/b/c/d"]) == 2
    assert "expected NS/NAME" in capsys.readouterr().err


def test_sync_without_repo_mirrors_every_repo_of_the_source(dest_hub, tmp_path):
    from huggingface_hub import HfApi

    from hub_tools.hub.sync import sync_repos
    from hub_tools.local_hub.server import start_background

    source = start_background(tmp_path / "src-root", tokens=["hf_src"])
    try:
        space = tmp_path / "space"
        space.mkdir()
        (space / "README.md").write_text("---\nsdk: gradio\n---\n")
        (space / "app.py").write_text("print(1)\n")
        push_folder(space, "team/chat", repo_type="space", token="hf_src", endpoint=source.url)
        push_folder(
            _checkpoint(tmp_path / "m", 3), "team/secret-model", private=True, token="hf_src", endpoint=source.url
        )
        report = sync_repos(source.url, dest_hub.url, source_token="hf_src", dest_token=DEST_TOKEN, progress=False)
        assert sorted(report.repos) == ["models/team/secret-model", "spaces/team/chat"]
        dst = HfApi(endpoint=dest_hub.url, token=DEST_TOKEN)
        assert dst.model_info("team/secret-model").private is True  # visibility carried over
        assert dst.space_info("team/chat").sdk == "gradio"
        assert sorted(dst.list_repo_files("team/chat", repo_type="space")) == [".gitattributes", "README.md", "app.py"]
    finally:
        source.stop()


def test_sync_errors_name_the_repo_and_the_hub_never_a_flag(local_hub, dest_hub, tmp_path):
    from hub_tools.hub.sync import SyncError, sync_repos

    push_folder(_checkpoint(tmp_path / "m", 5), "babyhub/sync-errors")
    with pytest.raises(SyncError, match="the source and the destination are the same endpoint") as same:
        sync_repos(HUB_URL, HUB_URL + "/", progress=False)
    with pytest.raises(SyncError, match="a sync mirrors every branch and tag of models/babyhub/sync-errors"):
        sync_repos(HUB_URL, dest_hub.url, repos=["babyhub/sync-errors@main"], progress=False)
    with pytest.raises(SyncError) as refused:
        sync_repos(HUB_URL, dest_hub.url, repos=["babyhub/sync-errors"], dest_token="hf_wrong", progress=False)
    message = str(refused.value)
    assert "mirroring models/babyhub/sync-errors" in message and f"the destination {dest_hub.url}" in message
    assert "HTTP 401" in message and "hf_wrong" not in message
    with pytest.raises(SyncError, match=f"mirroring datasets/babyhub/sync-missing from {HUB_URL}.*HTTP 404"):
        sync_repos(HUB_URL, dest_hub.url, repos=["datasets/babyhub/sync-missing"], dest_token=DEST_TOKEN)
    for err in (same.value, refused.value):
        assert "--" not in str(err)
