"""The Hub's rules on the local hub, so that `hub sync` to huggingface.co cannot fail on them later: repo ids are
case-insensitive (the first spelling kept), reserved names are refused, and card metadata is checked at commit time
with a clear 400; YAML is read without aliases and with a depth cap."""

import base64
import json
import time

import httpx
import pytest

from tests.conftest import HUB_TOKEN, HUB_URL

AUTH = {"authorization": f"Bearer {HUB_TOKEN}"}


@pytest.fixture(scope="module")
def api(local_hub):
    from huggingface_hub import HfApi

    return HfApi()


def test_repo_ids_are_case_insensitive_and_keep_their_spelling(api):
    from huggingface_hub.errors import HfHubHTTPError

    api.create_repo("rules-team/Baby-M1")
    api.upload_file(path_or_fileobj=b"weights", path_in_repo="w.txt", repo_id="rules-team/baby-m1")
    info = api.model_info("RULES-TEAM/baby-M1")
    assert info.id == "rules-team/Baby-M1" and [s.rfilename for s in info.siblings] == [".gitattributes", "w.txt"]
    assert open(api.hf_hub_download("rules-team/BABY-m1", "w.txt")).read() == "weights"
    with pytest.raises(HfHubHTTPError) as taken:
        api.create_repo("rules-team/baby-m1")
    assert taken.value.response.status_code == 409
    assert "You already created this model repo: rules-team/Baby-M1" in str(taken.value)
    assert api.create_repo("rules-team/baby-m1", exist_ok=True).repo_id == "rules-team/Baby-M1"
    assert [m.id for m in api.list_models(author="rules-team")] == ["rules-team/Baby-M1"]
    r = httpx.get(f"{HUB_URL}/rules-team/baby-M1/resolve/main/w.txt")
    assert r.status_code == 200 and r.content == b"weights"


def test_reserved_and_malformed_names_are_refused(api):
    from huggingface_hub.errors import HfHubHTTPError

    for repo_id, message in {
        "datasets/x": "invalid repo id 'datasets/x': namespace 'datasets' is reserved",
        "me/x.git": "invalid repo id 'me/x.git': the name 'x.git' must use",
    }.items():
        ns, name = repo_id.split("/")
        r = httpx.post(f"{HUB_URL}/api/repos/create", json={"name": name, "organization": ns}, headers=AUTH)
        assert r.status_code == 400 and message in r.json()["error"], r.text
    with pytest.raises(HfHubHTTPError) as caught:
        api.create_repo("api/x")
    assert "namespace 'api' is reserved" in str(caught.value)


BAD_CARDS = {
    "license: my-licence\n": (
        """Invalid metadata in README.md: "license" must be one of the Hub's licence ids (apache-2.0, mit, cc-by-4.0"""
    ),
    "license: [mit, gpl-9]\n": "got 'gpl-9'",
    "tags: [babylm, {a: 1}]\n": '"tags" must be a string or a list of strings',
    "pipeline_tag: chatting\n": '"pipeline_tag" must be a Hub task id such as text-generation',
    "model-index:\n- name: baby\n  results:\n  - task: {type: text-generation}\n    dataset: {type: d}\n"
    "    metrics: [{type: accuracy}]\n": (
        '"model-index[0].results[0].dataset.name" is required (a readable dataset name); '
        '"model-index[0].results[0].metrics[0].value" is required'
    ),
    "model-index: {name: baby}\n": '"model-index" must be a list of {name, results}',
    "a: &x [1, 2]\nb: *x\n": "Invalid YAML: aliases are not allowed (*x on line 2); write the value out",
    "a: " + "[" * 70 + "]" * 70 + "\n": "Invalid YAML: nested more than 64 levels deep",
    "- just\n- a list\n": "The metadata must be a YAML mapping",
}


def _commit_readme(repo: str, text: str) -> httpx.Response:
    """A raw commit of README.md (the clients validate a README first: this is what a script without them sends)."""
    lines = [
        {"key": "header", "value": {"summary": "card"}},
        {"key": "file", "value": {"path": "README.md", "content": base64.b64encode(text.encode()).decode()}},
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    return httpx.post(f"{HUB_URL}/api/models/{repo}/commit/main", content=body, headers=AUTH)


@pytest.mark.parametrize("front", list(BAD_CARDS), ids=range(len(BAD_CARDS)))
def test_card_metadata_the_hub_refuses_is_a_400_at_commit_time(api, front):
    repo = "babyhub/rules-cards"
    api.create_repo(repo, exist_ok=True)
    head = api.list_repo_commits(repo)[0].commit_id
    readme = f"---\n{front}---\n# card\n"
    r = _commit_readme(repo, readme)
    assert r.status_code == 400 and BAD_CARDS[front] in r.json()["error"], r.text
    assert api.list_repo_commits(repo)[0].commit_id == head  # nothing committed
    # huggingface_hub asks validate-yaml first, and says the same.
    with pytest.raises(ValueError) as caught:
        api.upload_file(path_or_fileobj=readme.encode(), path_in_repo="README.md", repo_id=repo)
    assert BAD_CARDS[front] in str(caught.value)


def test_model_card_push_is_refused_before_upload_and_good_cards_pass(api):
    from huggingface_hub import ModelCard, ModelCardData

    repo = "babyhub/rules-modelcard"
    api.create_repo(repo, exist_ok=True)
    bad = ModelCard.from_template(ModelCardData(license="babyhub-licence"))
    with pytest.raises(ValueError, match="must be one of the Hub's licence ids"):
        bad.push_to_hub(repo)
    good = ModelCard.from_template(
        ModelCardData(
            license="other", license_name="babyhub", language="en", tags=["babylm"], pipeline_tag="fill-mask"
        )
    )
    good.push_to_hub(repo)
    assert ModelCard.load(repo).data.license_name == "babyhub"
    # A Space card's sdk is checked too.
    r = httpx.post(f"{HUB_URL}/api/validate-yaml", json={"content": "---\nsdk: flask\n---\n", "repoType": "space"})
    assert '"sdk" must be one of gradio, streamlit, docker, static' in r.json()["errors"][0]["message"]


def test_an_alias_bomb_card_already_stored_costs_nothing_to_read(local_hub, api):
    """A card written before the rules (here straight into the store) gives no cardData, at once, to anyone."""
    repo_id = "babyhub/rules-old-bomb"
    api.create_repo(repo_id, exist_ok=True)
    store = local_hub.hub.store
    repo = store.get_repo("model", repo_id)
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join('*' + chr(97 + i) for _ in range(9))}]" for i in range(8)
    ]
    bomb = ("---\n" + "\n".join(lines) + "\n---\n# bomb\n").encode()
    _commit_bypassing_the_checks(store, repo, "README.md", bomb)  # the store's commit refuses such a card now
    start = time.monotonic()
    info = httpx.get(f"{HUB_URL}/api/models/{repo_id}").json()
    assert time.monotonic() - start < 2 and "cardData" not in info and info["tags"] == []


def _commit_bypassing_the_checks(store, repo, path: str, data: bytes) -> None:
    """Write one file on main with git plumbing, as a store written before the rules (or migrated) holds it."""
    from dulwich.objects import Blob

    from hub_tools.local_hub.gitplumbing import new_commit, write_objects
    from hub_tools.local_hub.gittrees import MODE_FILE, TreeEditor

    handle = store._handle(repo)
    head = store.resolve(repo, "main")
    blob = Blob.from_string(data)
    editor = TreeEditor(lambda oid: store._tree(handle, oid), store.commit_info(repo, head).tree)
    editor.put(path, MODE_FILE, blob.id.decode())
    trees, root = editor.build()
    commit = new_commit(root, [head], "old", "", "babyhub", time.time())
    write_objects(handle.git, [blob, *trees, commit])
    store._move_ref(handle, "refs/heads/main", head, commit.id.decode())
