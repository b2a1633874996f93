"""Spaces that run (`babyhub hub serve --run-spaces`): a Gradio Space's app starts from its repo, restarts on a new
commit, and `gradio_client.Client("NS/NAME")` finds it through `space_info`, as on the Hub."""

import time

import httpx
import pytest

TOKEN = "hf_spaces_run_token"
APP = """import gradio as gr


def greet(name):
    return "{greeting} " + name


gr.Interface(greet, "text", "text").launch()
"""
CARD = b"---\nsdk: gradio\napp_file: app.py\n---\n# Greeter\n"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    from hub_tools.local_hub.server import start_background

    running = start_background(tmp_path_factory.mktemp("spaces-run") / "root", tokens=[TOKEN], run_spaces=True)
    yield running
    running.stop()


def _wait_for(api, repo_id: str, commit: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runtime = api.get_space_runtime(repo_id)
        info = api.space_info(repo_id)
        if runtime.stage == "RUNNING" and info.sha == commit and runtime.raw.get("errorMessage") is None:
            return info
        if runtime.stage in ("RUNTIME_ERROR", "BUILD_ERROR"):
            raise AssertionError(f"the Space failed: {runtime.raw}")
        time.sleep(0.5)
    raise AssertionError(f"the Space did not run within {timeout}s: {api.get_space_runtime(repo_id).raw}")


def test_a_gradio_space_runs_restarts_on_commit_and_gradio_client_finds_it(hub, monkeypatch):
    import huggingface_hub
    from gradio_client import Client
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    repo = "babyhub/greeter"
    api.create_repo(repo, repo_type="space", space_sdk="gradio")
    assert api.get_space_runtime(repo).stage == "NO_APP_FILE"
    first = api.create_commit(
        repo,
        [CommitOperationAdd("README.md", CARD), CommitOperationAdd("app.py", APP.format(greeting="hello").encode())],
        commit_message="A greeter",
        repo_type="space",
    )
    info = _wait_for(api, repo, first.oid)
    assert info.host.startswith("http://127.0.0.1:")
    old_host = info.host

    # gradio_client resolves "NS/NAME" through huggingface_hub's module-level calls, whose endpoint is the session's
    # HF_ENDPOINT: point them at this hub (as HF_ENDPOINT would in a user's shell).
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.url)
    client = Client(repo, token=TOKEN, verbose=False)
    assert client.predict("baby", api_name="/greet") == "hello baby"
    page = httpx.get(f"{hub.url}/spaces/{repo}", headers={"accept": "text/html"})
    assert "RUNNING" in page.text and old_host in page.text

    second = api.upload_file(
        path_or_fileobj=APP.format(greeting="hi").encode(), path_in_repo="app.py", repo_id=repo, repo_type="space"
    )
    info = _wait_for(api, repo, second.oid)
    assert Client(repo, token=TOKEN, verbose=False).predict("baby", api_name="/greet") == "hi baby"
    if info.host != old_host:  # (a new port, unless the system gave the old one again)
        with pytest.raises(httpx.HTTPError):
            httpx.get(old_host + "/config", timeout=2)  # the old app is gone


def test_a_broken_app_reports_a_runtime_error_with_its_log(hub):
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    repo = "babyhub/broken-space"
    api.create_repo(repo, repo_type="space", space_sdk="gradio")
    api.create_commit(
        repo,
        [CommitOperationAdd("README.md", CARD), CommitOperationAdd("app.py", b"raise SystemExit('no model here')\n")],
        commit_message="broken",
        repo_type="space",
    )
    deadline = time.monotonic() + 60
    while api.get_space_runtime(repo).stage != "RUNTIME_ERROR" and time.monotonic() < deadline:
        time.sleep(0.3)
    runtime = api.get_space_runtime(repo)
    assert runtime.stage == "RUNTIME_ERROR" and "no model here" in runtime.raw["errorMessage"]
    streamlit = "babyhub/streamlit-space"
    api.create_repo(streamlit, repo_type="space", space_sdk="streamlit")
    api.upload_file(path_or_fileobj=b"---\nsdk: streamlit\n---\n", path_in_repo="README.md", repo_id=streamlit,
                    repo_type="space")  # fmt: skip
    deadline = time.monotonic() + 30
    while api.get_space_runtime(streamlit).stage != "CONFIG_ERROR" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (
        api.get_space_runtime(streamlit).raw["errorMessage"] == "only Gradio Spaces run on this hub (sdk: streamlit)"
    )
