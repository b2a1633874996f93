"""Pull requests and discussions on the local hub, driven by the unmodified clients (huggingface_hub, the `hf` CLI,
transformers, datasets): `refs/pr/N`, `create_pr=True` on every commit path, comments, status, merges."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import HUB_TOKEN, HUB_URL

ALICE = "hf_prs_alice_token_0001"  # a write user who is no member of `babyhub`
MALLORY = "hf_prs_mallory_token_02"  # another write user


@pytest.fixture(scope="module")
def api(local_hub):
    from huggingface_hub import HfApi

    local_hub.hub.users.add(f"{ALICE} user=alice")
    local_hub.hub.users.add(f"{MALLORY} user=mallory")
    return HfApi()


def _new_model(api, name: str, readme: str = "---\nlicense: apache-2.0\n---\n# A baby\n") -> str:
    repo = f"babyhub/{name}"
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=repo)
    api.upload_file(path_or_fileobj=b"one\ntwo\n", path_in_repo="notes.txt", repo_id=repo)
    return repo


def _read(api, repo, path, revision="main", repo_type="model", token=None) -> str:
    from pathlib import Path

    local = api.hf_hub_download(repo, path, revision=revision, repo_type=repo_type, token=token)
    return Path(local).read_text()


RESULTS = [
    {
        "name": "pr-card",
        "results": [
            {
                "task": {"type": "text-classification", "name": "Dialogue minimal pairs"},
                "dataset": {"type": "minpairs", "name": "minpairs"},
                "metrics": [{"type": "accuracy", "value": 0.61, "name": "min-pair accuracy"}],
            }
        ],
    }
]


def test_metadata_update_opens_a_pr_read_at_refs_pr_commented_and_merged(api):
    from huggingface_hub import ModelCard, metadata_update
    from huggingface_hub.errors import HfHubHTTPError

    repo = _new_model(api, "pr-card")
    info = metadata_update(repo, {"model-index": RESULTS}, create_pr=True, token=ALICE)
    assert info.pr_url == f"{HUB_URL}/{repo}/discussions/{info.pr_num}"
    num = info.pr_num

    # The change is on refs/pr/N only; main is untouched.
    assert "model-index" in _read(api, repo, "README.md", revision=f"refs/pr/{num}")
    assert "model-index" not in _read(api, repo, "README.md")
    refs = api.list_repo_refs(repo, include_pull_requests=True)
    assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [
        (f"refs/pr/{num}", api.list_repo_commits(repo, revision=f"refs/pr/{num}")[0].commit_id)
    ]

    listed = [d for d in api.get_repo_discussions(repo) if d.num == num]
    assert [(d.is_pull_request, d.status, d.author, d.git_reference) for d in listed] == [
        (True, "open", "alice", f"refs/pr/{num}")
    ]
    comment = api.comment_discussion(repo, num, "Thanks! **Merging** after a look.", token=HUB_TOKEN)
    details = api.get_discussion_details(repo, num)
    assert details.target_branch == "refs/heads/main" and details.conflicting_files == []
    assert "+- name: pr-card" in details.diff or "+  results:" in details.diff
    kinds = [e.type for e in details.events]
    assert kinds == ["comment", "commit", "comment"]
    assert details.events[-1].id == comment.id and details.events[-1].content.startswith("Thanks!")
    assert "<strong>Merging</strong>" in details.events[-1].rendered

    # Alice proposed it; only a member of `babyhub` merges it.
    with pytest.raises(HfHubHTTPError) as refused:
        api.merge_pull_request(repo, num, token=ALICE)
    assert refused.value.response.status_code == 403
    assert "alice cannot write to the namespace babyhub" in str(refused.value)
    before = api.list_repo_commits(repo)[0].commit_id
    api.merge_pull_request(repo, num, comment="Merged, thank you.")
    details = api.get_discussion_details(repo, num)
    assert details.status == "merged" and details.merge_commit_oid == api.list_repo_commits(repo)[0].commit_id
    card = ModelCard.load(repo)
    assert card.data.eval_results[0].metric_value == 0.61 and card.data.license == "apache-2.0"
    # A merge commit: first parent main's old head, second the pull request's head.
    raw = httpx.get(f"{HUB_URL}/api/models/{repo}/commits/main").json()[0]
    assert raw["parents"] == [before, refs.pull_requests[0].target_commit]
    assert raw["title"].endswith(f"(#{num})")

    with pytest.raises(HfHubHTTPError) as again:
        api.merge_pull_request(repo, num)
    assert f"Pull request #{num} of {repo} is merged: only an open one merges" in str(again.value)


def test_create_pr_on_every_commit_path(api, tmp_path):
    from huggingface_hub import CommitOperationAdd

    repo = _new_model(api, "pr-paths")
    main_before = api.list_repo_commits(repo)[0].commit_id

    info = api.create_commit(
        repo, [CommitOperationAdd("a.txt", b"from create_commit")], commit_message="a", create_pr=True, token=ALICE
    )
    assert info.pr_url and info.pr_num and info.pr_revision == f"refs/pr/{info.pr_num}"

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "b.txt").write_text("from upload_folder")
    pr_folder = api.upload_folder(folder_path=folder, repo_id=repo, create_pr=True, token=ALICE)

    # The `hf` CLI, as a user would type it.
    env = {**os.environ, "HF_TOKEN": ALICE}
    (tmp_path / "c.txt").write_text("from hf upload")
    done = subprocess.run(
        [sys.executable, "-m", "huggingface_hub.cli.hf", "upload", repo, str(tmp_path / "c.txt"), "c.txt",
         "--create-pr", "--commit-message", "via the CLI"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Uploaded" in done.stdout

    numbers = {d.num: d for d in api.get_repo_discussions(repo, discussion_type="pull_request")}
    assert len(numbers) == 3 and all(d.author == "alice" and d.status == "open" for d in numbers.values())
    assert pr_folder.pr_num in numbers and info.pr_num in numbers
    for d in numbers.values():
        files = {f.path for f in api.list_repo_tree(repo, revision=d.git_reference)}
        assert {"README.md", "notes.txt"} <= files and len(files & {"a.txt", "b.txt", "c.txt"}) == 1
    assert api.list_repo_commits(repo)[0].commit_id == main_before  # nothing reached main


def test_transformers_and_datasets_push_to_hub_with_create_pr(api, tmp_path):
    import datasets
    from transformers import AutoConfig

    repo = _new_model(api, "pr-transformers")
    config = AutoConfig.for_model("llama", vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    commit = config.push_to_hub(repo, create_pr=True, token=ALICE)
    assert (
        commit.pr_revision
        and json.loads(_read(api, repo, "config.json", revision=commit.pr_revision))["vocab_size"] == 32
    )
    assert "config.json" not in {f.path for f in api.list_repo_tree(repo)}

    dataset_repo = "babyhub/pr-dataset"
    api.create_repo(dataset_repo, repo_type="dataset", exist_ok=True)
    api.upload_file(path_or_fileobj=b"---\nlicense: cc-by-4.0\n---\n", path_in_repo="README.md", repo_id=dataset_repo,
                    repo_type="dataset")  # fmt: skip
    info = datasets.Dataset.from_dict({"prompt": ["*MOT: hi"], "chosen": ["*CHI: hi"]}).push_to_hub(
        dataset_repo, create_pr=True, token=ALICE
    )
    assert info.pr_revision
    loaded = datasets.load_dataset(dataset_repo, revision=info.pr_revision, download_mode="force_redownload")
    assert loaded["train"]["chosen"] == ["*CHI: hi"]
    main_files = {f.path for f in api.list_repo_tree(dataset_repo, repo_type="dataset", recursive=True)}
    assert not any(p.startswith("data/") for p in main_files)


def test_a_pull_request_refused_on_conflict_names_the_files(api):
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    repo = _new_model(api, "pr-conflict")
    pr = api.create_commit(
        repo, [CommitOperationAdd("notes.txt", b"alice's notes\n")], commit_message="rewrite", create_pr=True,
        token=ALICE,
    )  # fmt: skip
    api.upload_file(path_or_fileobj=b"owner's notes\n", path_in_repo="notes.txt", repo_id=repo)
    details = api.get_discussion_details(repo, pr.pr_num)
    assert details.conflicting_files == ["notes.txt"]
    head = api.list_repo_commits(repo)[0].commit_id
    with pytest.raises(HfHubHTTPError) as refused:
        api.merge_pull_request(repo, pr.pr_num)
    assert refused.value.response.status_code == 409
    assert f"Pull request #{pr.pr_num} of {repo} cannot be merged: notes.txt changed on main too" in str(refused.value)
    assert api.list_repo_commits(repo)[0].commit_id == head  # nothing merged
    # The author fixes it on refs/pr/N (a commit to the pull request's ref), and then it merges.
    api.upload_file(
        path_or_fileobj=b"owner's notes\n", path_in_repo="notes.txt", repo_id=repo, revision=pr.pr_revision,
        token=ALICE,
    )  # fmt: skip
    assert api.get_discussion_details(repo, pr.pr_num).conflicting_files == []
    api.merge_pull_request(repo, pr.pr_num)
    assert _read(api, repo, "notes.txt") == "owner's notes\n"


def test_who_may_push_to_a_pull_request_and_change_it(api):
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError

    repo = _new_model(api, "pr-rules")
    pr = api.create_commit(repo, [CommitOperationAdd("x.txt", b"x")], commit_message="x", create_pr=True, token=ALICE)
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_file(path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=repo, revision=pr.pr_revision,
                        token=MALLORY)  # fmt: skip
    assert f"refs/pr/{pr.pr_num} of {repo}: only its author alice and members of babyhub may push to it" in str(
        refused.value
    )
    with pytest.raises(HfHubHTTPError) as renamed:
        api.rename_discussion(repo, pr.pr_num, "hijacked", token=MALLORY)
    assert f"#{pr.pr_num} of {repo}: only its author and members of babyhub may change it" in str(renamed.value)
    assert api.rename_discussion(repo, pr.pr_num, "Add x", token=ALICE).new_title == "Add x"
    api.change_discussion_status(repo, pr.pr_num, "closed", comment="Not needed after all", token=ALICE)
    with pytest.raises(HfHubHTTPError) as closed:
        api.upload_file(path_or_fileobj=b"z", path_in_repo="z.txt", repo_id=repo, revision=pr.pr_revision,
                        token=ALICE)  # fmt: skip
    assert f"Pull request #{pr.pr_num} of {repo} is closed: reopen it to push to it" in str(closed.value)
    with pytest.raises(HfHubHTTPError) as merge_closed:
        api.merge_pull_request(repo, pr.pr_num)
    assert "is closed: only an open one merges" in str(merge_closed.value)
    statuses = [d.status for d in api.get_repo_discussions(repo, discussion_status="closed")]
    assert statuses == ["closed"] and not list(api.get_repo_discussions(repo, discussion_status="open"))


def test_discussions_comments_edits_and_the_errors(api):
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    repo = _new_model(api, "discussion-room")
    discussion = api.create_discussion(repo, "Which tokenizer?", description="BPE or words?", token=ALICE)
    assert not discussion.is_pull_request and discussion.events[0].content == "BPE or words?"
    reply = api.comment_discussion(repo, discussion.num, "BPE, 64 symbols.", token=MALLORY)
    edited = api.edit_discussion_comment(repo, discussion.num, reply.id, "BPE, 128 symbols.", token=MALLORY)
    assert edited.content == "BPE, 128 symbols." and edited.edited
    with pytest.raises(HfHubHTTPError) as not_hers:
        api.edit_discussion_comment(repo, discussion.num, reply.id, "hacked", token=ALICE)
    assert "only its author mallory may edit it" in str(not_hers.value)
    with pytest.warns(UserWarning):
        hidden = api.hide_discussion_comment(repo, discussion.num, reply.id)  # the owner hides any comment
    assert hidden.hidden
    with pytest.raises(HfHubHTTPError) as missing:
        api.get_discussion_details(repo, 999)
    assert f"Discussion #999 not found in {repo}" in str(missing.value)
    with pytest.raises(HfHubHTTPError) as not_a_pr:
        api.merge_pull_request(repo, discussion.num)
    assert f"#{discussion.num} of {repo} is a discussion: only pull requests merge" in str(not_a_pr.value)
    with pytest.raises(HfHubHTTPError) as anonymous:
        api.comment_discussion(repo, discussion.num, "hi", token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        list(api.get_repo_discussions("babyhub/no-such-repo"))
    r = httpx.post(f"{HUB_URL}/api/models/{repo}/discussions/1/comment", json={"comment": ""},
                   headers={"authorization": f"Bearer {ALICE}"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"] == "'comment' must be a non-empty string"
    r = httpx.get(f"{HUB_URL}/api/models/{repo}/discussions/0")
    assert r.status_code == 400 and "Invalid discussion number '0'" in r.json()["error"]


def test_a_refused_first_commit_leaves_no_pull_request(api):
    from huggingface_hub import CommitOperationDelete
    from huggingface_hub.errors import EntryNotFoundError

    repo = _new_model(api, "pr-refused")
    with pytest.raises(EntryNotFoundError):
        api.create_commit(repo, [CommitOperationDelete("nope.txt")], commit_message="d", create_pr=True, token=ALICE)
    assert list(api.get_repo_discussions(repo)) == []
