"""The local hub's pages in a real browser: Debian's Chromium driven by Playwright (never `playwright install`).

A model page shows its card, its checkpoint branches in step order and its results table; a commit page shows a
diff; a pull request page shows a comment; a private repo needs the sign-in. Each page is kept as a screenshot in
`outputs/screenshots/` of the checkout (ignored by git through `/outputs/`), or in $BABYHUB_SCREENSHOTS.
"""

import os
import re
from pathlib import Path

import pytest

from tests.test_baby_chat_browser import CHROMIUM
from tests.test_baby_chat_browser import CHROMIUM_ARGS as BABY_CHAT_ARGS
from tests.test_local_hub_pages import OWNER, pages_hub

CHROMIUM_ARGS = ["--headless", *BABY_CHAT_ARGS]
TIMEOUT_MS = 30_000
SCREENSHOTS = Path(
    os.environ.get("BABYHUB_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "outputs/screenshots"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with pages_hub(tmp_path_factory.mktemp("pages-browser")) as running:
        yield running


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def _shot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    assert path.stat().st_size > 10_000
    return path


def test_model_page_shows_card_checkpoints_in_step_order_and_results(site, page):
    from playwright.sync_api import expect

    _, urls = site
    page.goto(urls["repo"])
    expect(page.locator("#card h1")).to_have_text("The final baby")
    expect(page.locator("#card em")).to_have_text("DPO-trained")
    expect(page.locator("#results")).to_contain_text("min-pair accuracy")
    expect(page.locator("#results td.num")).to_have_text(["0.7"])
    rows = page.locator("#checkpoints tr.checkpoint")
    expect(rows).to_have_count(3)
    expect(rows.locator("td:first-child")).to_have_text(["checkpoint-2000", "checkpoint-4000", "checkpoint-10000"])
    expect(rows.locator("td:nth-child(3)")).to_have_text(["0.55", "0.6", "0.68"])
    _shot(page, "model_page")
    # A checkpoint opens its files at that branch, the Hub's URL.
    rows.first.locator("a").first.click()
    expect(page).to_have_url(re.compile(r"/lab/baby-dpo/tree/checkpoint-2000$"))
    expect(page.locator("#files")).to_contain_text("README.md")


def test_commit_page_shows_a_diff(site, page):
    from playwright.sync_api import expect

    _, urls = site
    page.goto(urls["repo"] + "/commits/main")
    page.get_by_role("link", name="Rewrite the notes").first.click()
    expect(page.locator("#commit-title")).to_have_text("Rewrite the notes")
    diff = page.locator('.diff[data-path="notes.txt"]')
    expect(diff.locator("span.del")).to_have_text(["-two"])
    expect(diff.locator("span.add")).to_have_text(["+2", "+four"])
    assert page.url == urls["commit"]
    _shot(page, "commit_page")


def test_pull_request_page_shows_a_comment(site, page):
    from playwright.sync_api import expect

    _, urls = site
    page.goto(urls["repo"] + "/discussions")
    page.get_by_role("link", name="Add alice's notes").click()
    assert page.url == urls["pr"]
    expect(page.locator("#status")).to_have_text("open")
    comment = page.locator(".event.comment").last
    expect(comment.locator(".who")).to_contain_text("owner")
    expect(comment.locator("strong")).to_have_text("good")
    expect(comment.locator("img")).to_have_count(0)  # raw HTML in a comment is text, never an element
    expect(page.locator('.diff[data-path="alice.txt"] span.add')).to_have_text(["+alice was here"])
    _shot(page, "pull_request_page")


def test_a_private_repo_needs_the_sign_in(site, page):
    from playwright.sync_api import expect

    hub, urls = site
    response = page.goto(urls["secret"])
    assert response.status == 401
    expect(page.locator("#error-status")).to_have_text("401")
    expect(page.locator("#card")).to_have_count(0)
    _shot(page, "private_repo_signed_out")
    page.fill("#login-form input[name=token]", "hf_not_a_token")
    page.click("#login-form button")
    expect(page.locator("#login-failed")).to_be_visible()
    assert "hf_not_a_token" not in page.content()
    page.fill("#login-form input[name=token]", OWNER)
    page.click("#login-form button")
    expect(page).to_have_url(urls["secret"])
    expect(page.locator("#card h1")).to_have_text("A private baby")
    expect(page.locator("#signed-in")).to_have_text("owner")
    assert OWNER not in page.content()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["babyhub_session"]["httpOnly"] and cookies["babyhub_session"]["value"] != OWNER
    _shot(page, "private_repo_signed_in")
    page.goto(hub.url + "/models")
    expect(page.locator("#repos")).to_contain_text("lab/secret-baby")
