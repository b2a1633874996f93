"""The local hub's web pages over HTTP: the Hub's URLs (the ones the clients print) open as pages, private repos need
a sign-in, and no page ever carries a token. The same pages in a real browser: test_local_hub_pages_browser.py."""

import os
import re
from contextlib import contextmanager

import httpx
import pytest

OWNER, ALICE = "hf_pages_owner_token_1", "hf_pages_alice_token_1"
PAGE = {"accept": "text/html,application/xhtml+xml"}
STEPS = {2000: 0.55, 10000: 0.68, 4000: 0.6}  # created in this order, shown in step order


def card(title: str, accuracy: float | None = None) -> bytes:
    results = ""
    if accuracy is not None:
        results = (
            "model-index:\n- name: baby-dpo\n  results:\n  - task: {type: text-classification, name: Dialogue "
            "minimal pairs}\n    dataset: {type: minpairs, name: minpairs}\n    metrics:\n"
            f"    - {{type: accuracy, name: min-pair accuracy, value: {accuracy}}}\n"
        )
    return (
        f"---\nlicense: apache-2.0\ntags: [babylm]\n{results}---\n# {title}\n\n"
        "A *DPO-trained* baby. <script>alert('card')</script>\n"
    ).encode()


def populate(hub) -> dict:
    """A public model with checkpoint branches, a text change, a pull request with a comment; a private model;
    a dataset and a Space. Returns the URLs the clients printed, by name."""
    from huggingface_hub import CommitOperationAdd, HfApi

    owner, alice = HfApi(endpoint=hub.url, token=OWNER), HfApi(endpoint=hub.url, token=ALICE)
    repo = "lab/baby-dpo"
    owner.create_repo(repo)
    first = owner.create_commit(
        repo,
        [
            CommitOperationAdd("README.md", card("The final baby", 0.7)),
            CommitOperationAdd("notes.txt", b"one\ntwo\nthree\n"),
            CommitOperationAdd("model.safetensors", os.urandom(2048)),
        ],
        commit_message="First upload",
    )
    change = owner.upload_file(
        path_or_fileobj=b"one\n2\nthree\nfour\n", path_in_repo="notes.txt", repo_id=repo,
        commit_message="Rewrite the notes",
    )  # fmt: skip
    for step, accuracy in STEPS.items():
        owner.create_branch(repo, branch=f"checkpoint-{step}", revision=first.oid)
        owner.upload_file(path_or_fileobj=card(f"Checkpoint {step}", accuracy), path_in_repo="README.md",
                          repo_id=repo, revision=f"checkpoint-{step}")  # fmt: skip
    pr = alice.upload_file(path_or_fileobj=b"alice was here\n", path_in_repo="alice.txt", repo_id=repo,
                           create_pr=True, commit_message="Add alice's notes")  # fmt: skip
    owner.comment_discussion(repo, pr.pr_num, "Looks **good** to me <img src=x onerror=alert(1)>")
    owner.create_repo("lab/secret-baby", private=True)
    owner.upload_file(path_or_fileobj=card("A private baby"), path_in_repo="README.md", repo_id="lab/secret-baby")
    owner.create_repo("lab/prefs", repo_type="dataset")
    owner.upload_file(path_or_fileobj=b"---\nlicense: cc-by-4.0\n---\n# Preferences\n", path_in_repo="README.md",
                      repo_id="lab/prefs", repo_type="dataset")  # fmt: skip
    owner.create_repo("lab/chat", repo_type="space", space_sdk="gradio")
    return {
        "repo": f"{hub.url}/{repo}",
        "commit": change.commit_url,
        "pr": pr.pr_url,
        "pr_tree": f"{hub.url}/{repo}/tree/{pr.pr_revision.replace('/', '%2F')}",
        "secret": f"{hub.url}/lab/secret-baby",
        "dataset": f"{hub.url}/datasets/lab/prefs",
        "space": f"{hub.url}/spaces/lab/chat",
    }


def start_hub(base):
    from hub_tools.local_hub.server import start_background

    tokens = base / "tokens"
    tokens.write_text(f"{OWNER} user=owner orgs=lab\n{ALICE} user=alice\n")
    return start_background(base / "root", token_file=tokens)


@contextmanager
def pages_hub(base):
    """A hub of `base` with `populate`'s repos: (the RunningHub, the URLs the clients printed)."""
    hub = start_hub(base)
    try:
        yield hub, populate(hub)
    finally:
        hub.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with pages_hub(tmp_path_factory.mktemp("pages")) as running:
        yield running


def _page(url, **kw) -> httpx.Response:
    response = httpx.get(url, headers={**PAGE, **kw.pop("headers", {})}, **kw)
    assert response.headers["content-type"].startswith("text/html")
    return response


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_repo_page_shows_the_card_results_and_checkpoints_in_step_order(site):
    hub, urls = site
    r = _page(urls["repo"])
    assert r.status_code == 200
    html = r.text
    assert "<h1>The final baby</h1>" in html and "<em>DPO-trained</em>" in html
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html  # card HTML is escaped, never run
    results = _text(html.split('id="results"')[1].split("</table>")[0])
    assert "Dialogue minimal pairs minpairs min-pair accuracy 0.7" in results
    checkpoints = html.split('id="checkpoints"')[1].split("</table>")[0]
    assert re.findall(r">checkpoint-(\d+)<", checkpoints) == ["2000", "4000", "10000"]
    assert re.findall(r'class="num">(0\.\d+)<', checkpoints) == ["0.55", "0.6", "0.68"]
    assert "babylm" in _text(html.split('id="tags"')[1].split("</div>")[0])


def test_the_urls_the_clients_print_open(site):
    hub, urls = site
    commit = _page(urls["commit"])
    assert commit.status_code == 200 and "Rewrite the notes" in commit.text
    diff = _text(commit.text.split('data-path="notes.txt"')[1].split("</pre>")[0])
    assert "-two +2" in diff and "+four" in diff
    pr = _page(urls["pr"])
    assert pr.status_code == 200 and "Add alice&#39;s notes" in pr.text
    assert "Looks <strong>good</strong> to me" in pr.text and "<img src=x" not in pr.text
    assert "+alice was here" in _text(pr.text)
    tree = _page(urls["pr_tree"])
    assert tree.status_code == 200 and "alice.txt" in tree.text
    for name in ("dataset", "space"):
        assert _page(urls[name]).status_code == 200
    blob = _page(f"{urls['repo']}/blob/main/notes.txt")
    assert blob.status_code == 200 and "four" in blob.text and 'id="download"' in blob.text
    weights = _page(f"{urls['repo']}/blob/main/model.safetensors")
    assert "stored with LFS" in weights.text and 'id="file-text"' not in weights.text
    commits = _page(f"{urls['repo']}/commits/main")
    assert _text(commits.text).count("Rewrite the notes") == 1 and "First upload" in commits.text
    listing = _page(f"{hub.url}/models?search=BABY")
    assert "lab/baby-dpo" in listing.text and "lab/secret-baby" not in listing.text
    assert _page(f"{hub.url}/").status_code == 200


def test_a_private_repo_needs_a_sign_in_and_no_page_carries_the_token(site):
    hub, urls = site
    anonymous = _page(urls["secret"])
    assert anonymous.status_code == 401 and 'id="login-form"' in anonymous.text
    assert "A private baby" not in anonymous.text
    # The API keeps answering JSON.
    assert httpx.get(urls["secret"].replace("/lab/", "/api/models/lab/")).json()["error"].startswith("Repository")

    failed = httpx.post(f"{hub.url}/login", data={"token": "hf_wrong_token_123", "next": "/lab/secret-baby"})
    assert failed.status_code == 401 and "does not know that token" in failed.text
    assert "hf_wrong_token_123" not in failed.text

    signed = httpx.post(f"{hub.url}/login", data={"token": OWNER, "next": "/lab/secret-baby"})
    assert signed.status_code == 303 and signed.headers["location"] == "/lab/secret-baby"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and OWNER not in cookie
    session = signed.cookies
    page = _page(urls["secret"], cookies=session)
    assert page.status_code == 200 and "A private baby" in page.text and OWNER not in page.text
    assert 'id="signed-in">owner<' in page.text
    assert "lab/secret-baby" in _page(f"{hub.url}/models", cookies=session).text
    # A cookie reads pages; it never writes.
    write = httpx.post(f"{hub.url}/api/models/lab/secret-baby/discussions", json={"title": "x"}, cookies=session)
    assert write.status_code == 401
    # Signing in never sends a browser to another site.
    elsewhere = httpx.post(f"{hub.url}/login", data={"token": OWNER, "next": "//evil.example/x"})
    assert elsewhere.headers["location"] == "/"
    out = httpx.get(f"{hub.url}/logout", cookies=session)
    assert out.status_code == 303
    assert _page(urls["secret"], cookies=session).status_code == 401  # the session is closed


def test_missing_things_are_pages_for_browsers_and_json_for_clients(site):
    hub, urls = site
    missing = _page(f"{urls['repo']}/blob/main/nope.txt")
    assert missing.status_code == 404 and "Entry not found: nope.txt at main" in missing.text
    assert _page(f"{urls['repo']}/commit/{'0' * 40}").status_code == 404
    assert _page(f"{urls['repo']}/discussions/99").status_code == 404
    assert _page(f"{hub.url}/widgets").status_code == 404
    assert httpx.get(f"{urls['repo']}/resolve/main/nope.txt").json()["error"] == "Entry not found: nope.txt at main"


def test_a_gated_repos_contents_stay_out_of_diffs_and_paths_are_quoted(site):
    from huggingface_hub import HfApi

    hub, _ = site
    owner = HfApi(endpoint=hub.url, token=OWNER)
    repo = "lab/gated-baby"
    owner.create_repo(repo)
    owner.update_repo_settings(repo, gated="manual")
    secret = owner.upload_file(path_or_fileobj=b"the secret recipe\n", path_in_repo="odd name #1?.txt", repo_id=repo)
    pr = HfApi(endpoint=hub.url, token=ALICE).upload_file(
        path_or_fileobj=b"alice's secret\n", path_in_repo="x.txt", repo_id=repo, create_pr=True
    )
    commit_page = _page(secret.commit_url)
    assert commit_page.status_code == 200 and "odd name #1?.txt" in commit_page.text
    assert "the secret recipe" not in commit_page.text  # anonymous: no contents
    assert "the secret recipe" in _page(secret.commit_url, headers={"authorization": f"Bearer {OWNER}"}).text
    alice = {"authorization": f"Bearer {ALICE}"}
    assert httpx.get(f"{hub.url}/api/models/{repo}/discussions/{pr.pr_num}", headers=alice).json()["diff"] == (
        "diff --git a/x.txt b/x.txt\nnew file\nContents not shown (x.txt): the repo is gated\n"
    )  # alice is not a member of lab: the manual gate keeps even her own change's text out
    tree = _page(f"{hub.url}/{repo}/tree/main", headers={"authorization": f"Bearer {OWNER}"}).text
    assert 'href="/lab/gated-baby/blob/main/odd%20name%20%231%3F.txt"' in tree
    blob = _page(f"{hub.url}/{repo}/blob/main/odd%20name%20%231%3F.txt", headers={"authorization": f"Bearer {OWNER}"})
    assert blob.status_code == 200 and "the secret recipe" in blob.text
