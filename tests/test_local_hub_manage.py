"""Metadata and management on the local hub with the unmodified clients: tags from the card, list filters and
sorting, gated repos, `expand` with the last commit, copies of LFS files, move, duplicate, super-squash,
`hf repos ls`, and the Xet endpoints that name the fix."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import HUB_TOKEN, HUB_URL

OUTSIDER = "hf_manage_outsider_01"
CARD = """---
license: apache-2.0
language: en
library_name: transformers
pipeline_tag: text-generation
datasets: [babyhub/child-dpo]
tags: [babylm, manage-test]
---
# A baby
"""


@pytest.fixture(scope="module")
def api(local_hub):
    from huggingface_hub import HfApi

    local_hub.hub.users.add(f"{OUTSIDER} user=outsider")
    return HfApi()


def _model(api, name, card=CARD, files=None):
    repo = f"manage/{name}"
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=card.encode(), path_in_repo="README.md", repo_id=repo)
    for path, data in (files or {}).items():
        api.upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=repo)
    return repo


def test_tags_come_from_the_card_and_list_models_filters_searches_and_sorts(api):
    a = _model(api, "tagged-a")
    b = _model(api, "tagged-b", card=CARD.replace("manage-test", "other-tag").replace("text-generation", "fill-mask"))
    info = api.model_info(a)
    assert info.tags == [
        "babylm", "manage-test", "transformers", "text-generation", "license:apache-2.0", "dataset:babyhub/child-dpo",
        "en",
    ]  # fmt: skip
    assert info.pipeline_tag == "text-generation" and info.library_name == "transformers"
    assert [m.id for m in api.list_models(filter="manage-test")] == [a]
    assert {m.id for m in api.list_models(filter=["babylm", "license:apache-2.0"], author="manage")} == {a, b}
    assert [m.id for m in api.list_models(filter=["babylm", "other-tag"])] == [b]
    assert [m.id for m in api.list_models(pipeline_tag="fill-mask", author="manage")] == [b]
    assert [m.id for m in api.list_models(trained_dataset="babyhub/child-dpo", search="TAGGED-A")] == [a]
    newest = [m.id for m in api.list_models(author="manage", sort="last_modified")]
    assert newest.index(b) < newest.index(a)  # b was written last
    assert len(list(api.list_models(author="manage", limit=1))) == 1
    with pytest.raises(Exception, match="Invalid sort 'popularity'"):
        list(api.list_models(sort="popularity"))
    expanded = next(iter(api.list_models(search="tagged-a", expand=["tags", "lastModified"])))
    assert expanded.tags == info.tags and expanded.last_modified is not None and expanded.downloads is None
    assert api.model_info(a, expand=["pipeline_tag"]).pipeline_tag == "text-generation"


def test_gated_is_stored_and_enforced(api, tmp_path):
    from huggingface_hub.errors import GatedRepoError

    repo = _model(api, "gated", files={"w.txt": b"weights"})
    api.update_repo_settings(repo, gated="auto")
    assert api.model_info(repo).gated == "auto"
    assert repo in {m.id for m in api.list_models(gated=True, author="manage")}
    with pytest.raises(GatedRepoError) as anonymous:
        api.hf_hub_download(repo, "w.txt", token=False, cache_dir=tmp_path / "anonymous")
    assert "must be authenticated to access it" in str(anonymous.value)
    assert open(api.hf_hub_download(repo, "w.txt", token=OUTSIDER, cache_dir=tmp_path / "auto")).read() == "weights"
    api.update_repo_settings(repo, gated="manual")
    with pytest.raises(GatedRepoError) as manual:
        api.hf_hub_download(repo, "w.txt", token=OUTSIDER, cache_dir=tmp_path / "manual")
    assert "outsider is not in the authorized list" in str(manual.value)
    assert [s.rfilename for s in api.model_info(repo, token=OUTSIDER).siblings]  # the file list stays visible
    api.update_repo_settings(repo, gated=False)
    assert api.model_info(repo).gated is False
    r = httpx.put(f"{HUB_URL}/api/models/{repo}/settings", json={"gated": "sometimes"},
                  headers={"authorization": f"Bearer {HUB_TOKEN}"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"] == '\'gated\' must be false, "auto" or "manual"'


def test_expand_gives_each_entry_its_last_commit(api):
    repo = _model(api, "expand", files={"a.txt": b"a", "sub/b.txt": b"b"})
    api.upload_file(path_or_fileobj=b"a2", path_in_repo="a.txt", repo_id=repo, commit_message="change a")
    entries = {e.path: e for e in api.list_repo_tree(repo, expand=True)}
    assert entries["a.txt"].last_commit.title == "change a"
    assert entries["sub"].last_commit.title == "Upload sub/b.txt with huggingface_hub"
    assert entries["README.md"].last_commit.title == "Upload README.md with huggingface_hub"
    [info] = api.get_paths_info(repo, ["sub/b.txt"], expand=True)
    assert info.last_commit.oid == entries["sub"].last_commit.oid


def test_copies_of_lfs_files_promote_a_checkpoint_to_main(api, tmp_path):
    from huggingface_hub import CommitOperationCopy, HfFileSystem

    repo = "manage/copy-baby"
    api.create_repo(repo, exist_ok=True)
    api.create_branch(repo, branch="checkpoint-2000")
    weights = os.urandom(4096)
    api.upload_file(path_or_fileobj=weights, path_in_repo="model.safetensors", repo_id=repo,
                    revision="checkpoint-2000")  # fmt: skip
    api.create_commit(
        repo,
        [CommitOperationCopy("model.safetensors", "model.safetensors", src_revision="checkpoint-2000")],
        commit_message="Promote checkpoint-2000",
    )
    main = {f.path: f for f in api.list_repo_tree(repo)}
    assert main["model.safetensors"].lfs.size == 4096
    assert open(api.hf_hub_download(repo, "model.safetensors"), "rb").read() == weights

    fs = HfFileSystem()
    fs.cp_file(f"{repo}/model.safetensors", f"{repo}/backup/model.safetensors")
    assert fs.cat_file(f"{repo}/backup/model.safetensors") == weights

    # A copy names an object this repo must already hold: a hash alone gets nothing from another repo.
    other = os.urandom(64)
    api.create_repo("manage/copy-other", exist_ok=True)
    api.upload_file(path_or_fileobj=other, path_in_repo="x.safetensors", repo_id="manage/copy-other")
    sha = {f.path: f for f in api.list_repo_tree("manage/copy-other")}["x.safetensors"].lfs.sha256
    line = {"key": "lfsFile", "value": {"path": "stolen.bin", "algo": "sha256", "oid": sha}}
    body = json.dumps({"key": "header", "value": {"summary": "copy"}}) + "\n" + json.dumps(line)
    r = httpx.post(f"{HUB_URL}/api/models/{repo}/commit/main", content=body,
                   headers={"authorization": f"Bearer {HUB_TOKEN}"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"] == (
        f"Cannot copy LFS object {sha} to stolen.bin: {repo} holds no file with it on any branch, tag or pull "
        "request; upload the file instead"
    )


def test_move_duplicate_and_super_squash(api):
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    repo = _model(api, "to-move", files={"w.txt": b"w"})
    api.create_branch(repo, branch="checkpoint-2")
    api.create_discussion(repo, "Kept through the move")
    commits = [c.commit_id for c in api.list_repo_commits(repo)]
    api.move_repo(repo, "manage/Moved-Baby")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(repo)
    moved = api.model_info("manage/moved-baby")
    assert moved.id == "manage/Moved-Baby" and moved.sha == commits[0]
    assert [c.commit_id for c in api.list_repo_commits("manage/Moved-Baby")] == commits
    assert {b.name for b in api.list_repo_refs("manage/Moved-Baby").branches} == {"main", "checkpoint-2"}
    assert [d.title for d in api.get_repo_discussions("manage/Moved-Baby")] == ["Kept through the move"]
    with pytest.raises(HfHubHTTPError) as outsider:
        api.move_repo("manage/Moved-Baby", "outsider/mine", token=OUTSIDER)
    assert outsider.value.response.status_code == 403

    copy = api.duplicate_repo("manage/Moved-Baby", "manage/copy-of-baby", private=True)
    assert copy.repo_id == "manage/copy-of-baby"
    dup = api.model_info("manage/copy-of-baby")
    assert dup.private and {s.rfilename for s in dup.siblings} == {s.rfilename for s in moved.siblings}
    assert [c.title for c in api.list_repo_commits("manage/copy-of-baby")][0] == "Duplicate from manage/Moved-Baby"
    with pytest.raises(HfHubHTTPError) as exists:
        api.duplicate_repo("manage/Moved-Baby", "manage/copy-of-baby")
    assert exists.value.response.status_code == 409
    assert api.duplicate_repo("manage/Moved-Baby", "manage/copy-of-baby", exist_ok=True)

    files = {f.path for f in api.list_repo_tree("manage/Moved-Baby", recursive=True)}
    api.super_squash_history("manage/Moved-Baby", commit_message="One commit")
    squashed = api.list_repo_commits("manage/Moved-Baby")
    assert [c.title for c in squashed] == ["One commit"]
    assert {f.path for f in api.list_repo_tree("manage/Moved-Baby", recursive=True)} == files
    assert open(api.hf_hub_download("manage/Moved-Baby", "w.txt")).read() == "w"


def test_hf_repos_ls_lists_ones_own_repos(api, local_hub):
    alice = "hf_manage_alice_0001"
    local_hub.hub.users.add(f"{alice} user=alice-ls orgs=ls-lab")
    from huggingface_hub import HfApi

    mine = HfApi(token=alice)
    mine.create_repo("alice-ls/one")
    mine.create_repo("ls-lab/two", repo_type="dataset", private=True)
    env = {**os.environ, "HF_TOKEN": alice}
    run = [sys.executable, "-m", "huggingface_hub.cli.hf", "repos", "ls", "--format", "json"]
    own = subprocess.run(run, env=env, capture_output=True, text=True, timeout=120)
    assert own.returncode == 0, own.stderr
    assert [(r["id"], r["type"]) for r in json.loads(own.stdout)] == [("alice-ls/one", "model")]
    org = subprocess.run([*run, "--namespace", "ls-lab"], env=env, capture_output=True, text=True, timeout=120)
    assert [(r["id"], r["visibility"]) for r in json.loads(org.stdout)] == [("ls-lab/two", "private")]
    refused = subprocess.run([*run, "--namespace", "manage"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "alice-ls is not a member of manage" in refused.stdout + refused.stderr


def test_xet_token_endpoints_name_the_fix(api):
    """With Xet left on, the upload fails; the hub's answer names HF_HUB_DISABLE_XET=1 (the client's words are
    quoted in hub_tools/local_hub/xet.py: its Rust client does not show the server's message)."""
    from huggingface_hub import constants

    from hub_tools.local_hub import xet

    r = httpx.get(f"{HUB_URL}/api/models/manage/tagged-a/xet-write-token/main",
                  headers={"authorization": f"Bearer {HUB_TOKEN}"})  # fmt: skip
    assert r.status_code == 400 and "HF_HUB_DISABLE_XET=1" in r.json()["error"]
    assert r.headers["X-Error-Code"] == "XetDisabled"
    api.create_repo("manage/xet", exist_ok=True)
    constants.HF_HUB_DISABLE_XET = False
    try:
        with pytest.raises(ConnectionError) as caught:
            api.upload_file(path_or_fileobj=b"\0" * 64, path_in_repo="w.safetensors", repo_id="manage/xet")
    finally:
        constants.HF_HUB_DISABLE_XET = True
    expected = xet.CLIENT_ERROR.format(endpoint=HUB_URL).replace("NAMESPACE/NAME", "manage/xet")
    assert f"{type(caught.value).__name__}: {caught.value}" == expected
