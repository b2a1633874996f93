"""`publish.push_files` proposing a change as a pull request: always (`create_pr=True`), or when the token cannot
write the repo (`create_pr="auto"`, what `babyhub eval --push-results` uses on a model one does not own)."""

import pytest

from hub_tools.hub import publish
from tests.conftest import HUB_URL

ALICE, READER = "hf_publish_pr_alice_01", "hf_publish_pr_reader_1"


@pytest.fixture(scope="module")
def api(local_hub):
    from huggingface_hub import HfApi

    local_hub.hub.users.add(f"{ALICE} user=pr-alice")
    local_hub.hub.users.add(f"{READER} user=pr-reader role=read")
    monkey_backoff = publish.BACKOFF_BASE
    publish.BACKOFF_BASE = 0.01
    yield HfApi()
    publish.BACKOFF_BASE = monkey_backoff


def _repo(api, name: str) -> str:
    repo = f"babyhub/{name}"
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\n# baby\n", path_in_repo="README.md", repo_id=repo)
    return repo


def test_create_pr_true_proposes_and_leaves_the_branch(api):
    repo = _repo(api, "publish-pr-own")
    head = api.list_repo_commits(repo)[0].commit_id
    result = publish.push_files({"results.json": b"{}"}, repo, commit_message="Add results", create_pr=True)
    assert result.pr_url == f"{HUB_URL}/{repo}/discussions/{result.pr_num}" and result.url == result.pr_url
    assert api.list_repo_commits(repo)[0].commit_id == head
    [pr] = api.get_repo_discussions(repo)
    assert pr.title == "Add results" and pr.is_pull_request
    # A change main already holds: nothing to propose, no pull request.
    nothing = publish.push_files({"README.md": b"---\nlicense: mit\n---\n# baby\n"}, repo, create_pr=True)
    assert nothing.pr_url is None and nothing.commit_oid is None


def test_create_pr_auto_writes_when_it_may_and_proposes_when_refused(api):
    repo = _repo(api, "publish-pr-auto")
    direct = publish.push_files({"a.txt": b"a"}, repo, create_pr="auto")
    assert direct.pr_url is None and direct.commit_oid == api.list_repo_commits(repo)[0].commit_id
    proposed = publish.push_files({"a.txt": b"by alice"}, repo, create_pr="auto", token=ALICE)
    assert proposed.pr_num is not None and proposed.url.endswith(f"/discussions/{proposed.pr_num}")
    assert [(d.author, d.num) for d in api.get_repo_discussions(repo)] == [("pr-alice", proposed.pr_num)]
    assert open(api.hf_hub_download(repo, "a.txt")).read() == "a"


def test_a_retried_pull_request_is_opened_once(api, local_hub):
    repo = _repo(api, "publish-pr-retry")
    local_hub.faults.clear()
    local_hub.faults.add("commit", "drop_after")  # the PR is opened, the client never hears it
    try:
        result = publish.push_files({"b.txt": b"b"}, repo, commit_message="Add b", create_pr=True, token=ALICE)
        assert local_hub.faults.fired == [("commit", "drop_after")]
    finally:
        local_hub.faults.clear()
    prs = list(api.get_repo_discussions(repo))
    assert [d.num for d in prs] == [result.pr_num]


def test_refusals_name_the_repo(api):
    repo = _repo(api, "publish-pr-refused")
    with pytest.raises(publish.TokenRefusedError) as reader:
        publish.push_files({"c.txt": b"c"}, repo, create_pr="auto", token=READER)
    assert f"push of 1 file(s) to {repo}@main (PR): the hub refused the token (HTTP 403)" in str(reader.value)
    with pytest.raises(publish.PushError) as branch:
        publish.push_files({"c.txt": b"c"}, repo, revision="nope", create_pr=True, token=ALICE)
    assert str(branch.value) == f"cannot open a pull request on {repo}@nope: no such branch"
    with pytest.raises(publish.PushError) as missing:
        publish.push_files({"c.txt": b"c"}, "babyhub/no-such-model", create_pr=True)
    assert "cannot open a pull request on babyhub/no-such-model: no such model repo (or it is private)" in str(
        missing.value
    )
    with pytest.raises(publish.PushError) as wrong:
        publish.push_files({"c.txt": b"c"}, repo, create_pr="yes")
    assert str(wrong.value) == f"push to {repo}: create_pr must be True, False or 'auto', not 'yes'"


def test_evaluation_results_on_a_model_one_does_not_own_become_a_pull_request(api):
    """What `babyhub eval --push-results` does through `push_results_to_card` once it passes create_pr="auto": the
    card with the new model-index, proposed to the owner (main keeps its card until the owner merges)."""
    from huggingface_hub import ModelCard

    from hub_tools.evaluation import MinpairsResult, merge_eval_results, minpairs_eval_result

    repo = _repo(api, "publish-pr-eval")
    result = MinpairsResult("babyhub/minpairs-eval", "sum", 0.625, 64, 0)
    card = open(api.hf_hub_download(repo, "README.md")).read()
    updated = merge_eval_results(card, [minpairs_eval_result(result)], model_name="publish-pr-eval")
    pushed = publish.push_files(
        {"README.md": updated.encode()}, repo, create_pr="auto", token=ALICE, commit_message="Add evaluation results"
    )
    assert pushed.pr_url and pushed.pr_num
    text = open(api.hf_hub_download(repo, "README.md", revision=f"refs/pr/{pushed.pr_num}")).read()
    proposed = ModelCard(text)
    assert proposed.data.eval_results[0].metric_value == 0.625
    assert ModelCard.load(repo).data.eval_results is None
