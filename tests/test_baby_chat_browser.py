"""The baby chat Space in a real browser: Debian's Chromium driven by Playwright (never `playwright install`).

A person types a mother line and sees an answer appear in every column; the page is saved as a screenshot in
the test's temp dir (printed, so it can be looked at).
"""

import re

import pytest

from tests.fixtures.browser import chromium_page
from tests.test_baby_chat import launch_app, publish_chat_models

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def chat_url(local_hub, tiny_baby, preference_dirs):
    hub = publish_chat_models(tiny_baby, preference_dirs.eval)
    repo = hub["repo"]
    app, url = launch_app(
        {"BABYHUB_SPACE_MODELS": f"{repo},{repo}@checkpoint-2", "BABYHUB_SPACE_EXAMPLES": hub["dataset"]}
    )
    yield url, hub
    app.demo.close()


@pytest.fixture
def page():
    with chromium_page(height=1000) as page:
        yield page


def test_browser_mother_line_gets_an_answer_in_every_column(chat_url, page, tmp_path):
    from playwright.sync_api import expect

    url, hub = chat_url
    page.goto(url, wait_until="domcontentloaded")
    columns = [page.locator(f"#chat-{i}") for i in range(2)]
    mother = page.locator("#mother textarea")
    expect(mother).to_be_visible(timeout=TIMEOUT_MS)
    # Each column shows the commit its revision resolves to.
    expect(page.locator("#commit-1")).to_contain_text(hub["commits"]["checkpoint-2"][:7])

    # An empty line does nothing.
    mother.press("Enter")
    page.wait_for_timeout(500)
    for column in columns:
        expect(column.locator(".message")).to_have_count(0)

    mother.fill("what is that ?")
    mother.press("Enter")
    for column in columns:
        expect(column.locator(".message.user")).to_contain_text("*MOT: what is that ?", timeout=TIMEOUT_MS)
        expect(column.locator(".message.bot").last).to_contain_text(re.compile(r"\*CHI: \S"), timeout=TIMEOUT_MS)
    expect(mother).to_have_value("")
    shot = tmp_path / "baby_chat.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 20_000

    # The Score tab: one row per model, with its preference.
    page.get_by_role("tab", name="Score").click()
    page.locator("#score-mother textarea").fill("what is that ?")
    page.locator("#score-a textarea").fill("it looks like a gun .")
    page.locator("#score-b textarea").fill("you do it like that .")
    page.locator("#score").click()
    table = page.locator("#score-table")
    expect(table).to_contain_text("tiny-baby-chat@checkpoint-2", timeout=TIMEOUT_MS)
    expect(table).to_contain_text(re.compile(r"\b[AB]\b"))
    page.screenshot(path=str(tmp_path / "baby_chat_score.png"), full_page=True)
