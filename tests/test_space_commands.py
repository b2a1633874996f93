"""`babyhub space push|run`: the chat Space reaches the local hub as a bundle with the configured models, and
the pushed Space, downloaded as the Hub would serve it, runs with `babyhub space run`."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hub_tools.cli import main
from tests.conftest import HUB_TOKEN
from tests.test_baby_chat import free_port, publish_chat_models

SPACE_DIR = Path(__file__).resolve().parents[1] / "spaces" / "baby_chat"
SPACE_REPO = "space-tests/baby-chat"


@pytest.fixture(scope="module")
def pushed_space(local_hub, tiny_baby, preference_dirs, tmp_path_factory):
    """The chat Space pushed with the tiny models, and a download of it (as the Spaces runtime gets it)."""
    from huggingface_hub import snapshot_download

    hub = publish_chat_models(tiny_baby, preference_dirs.eval)
    models = f"{hub['repo']},{hub['repo']}@checkpoint-2"
    argv = ["space", "push", str(SPACE_DIR), "--repo-id", SPACE_REPO, "--models", models]
    assert main([*argv, "--examples-dataset", hub["dataset"]]) == 0
    folder = snapshot_download(SPACE_REPO, repo_type="space", local_dir=tmp_path_factory.mktemp("space"))
    return Path(folder), hub, argv


def test_space_push_bundles_the_app_with_the_configured_models(pushed_space, capsys):
    import yaml
    from huggingface_hub import HfApi, SpaceCard

    folder, hub, argv = pushed_space
    files = {p.name for p in folder.iterdir() if p.is_file()}
    assert {"app.py", "babychat.py", "scoring.py", "dialogue.py", "models.yaml", "requirements.txt"} <= files
    # The scorer and the text convention are the checkout's, byte for byte.
    repo_root = SPACE_DIR.parents[1]
    for module in ("scoring.py", "dialogue.py"):
        assert (folder / module).read_bytes() == (repo_root / "hub_tools" / module).read_bytes()
    config = yaml.safe_load((folder / "models.yaml").read_text())
    assert [(m["repo_id"], m.get("revision")) for m in config["models"]] == [
        (hub["repo"], None),
        (hub["repo"], "checkpoint-2"),
    ]
    assert config["examples"]["dataset"] == hub["dataset"]
    card = SpaceCard.load(folder / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.sdk_version == "6.31.0" and card.data.short_description
    assert card.data.models == [hub["repo"]] and card.data.datasets == [hub["dataset"]]
    assert "Baby chat" in card.text  # the body of the card survives the front-matter update
    for path in folder.rglob("*"):
        assert not path.is_file() or HUB_TOKEN.encode() not in path.read_bytes(), f"token written into {path}"
    info = HfApi().repo_info(SPACE_REPO, repo_type="space")
    assert info.id == SPACE_REPO

    # Pushing the same Space again changes nothing: no new commit.
    capsys.readouterr()
    assert main([*argv, "--examples-dataset", hub["dataset"]]) == 0
    assert "already up to date" in capsys.readouterr().out


def test_space_push_refuses_bad_input_with_a_clear_error(tiny_baby, tmp_path, capsys):
    space = str(SPACE_DIR)
    cases = [
        ([space, "--repo-id", "ns/chat", "--models", str(tiny_baby)], "cannot read the local folder"),
        ([space, "--repo-id", "ns/chat", "--models", "ns/baby@"], "malformed"),
        ([space, "--repo-id", "ns/chat", "--models", "ns/b", "--examples-dataset", str(tmp_path)], "local examples"),
        ([space, "--repo-id", "no-namespace"], "NAMESPACE/NAME"),
        ([str(tmp_path / "missing"), "--repo-id", "ns/chat"], "is not a folder"),
        ([str(tmp_path), "--repo-id", "ns/chat"], "has no app.py"),
    ]
    for argv, message in cases:
        assert main(["space", "push", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("babyhub space: error:") and message in err, err


def test_pushed_space_imports_the_scorer_it_carries(pushed_space, monkeypatch):
    """In the Space there is no babyhub: babychat.py must find scoring.py and dialogue.py beside it."""
    import importlib.util

    folder, _, _ = pushed_space
    for name in ("hub_tools", "hub_tools.scoring", "hub_tools.dialogue"):
        monkeypatch.setitem(sys.modules, name, None)  # `from hub_tools... import` now raises ImportError
    monkeypatch.syspath_prepend(str(folder))
    for name in ("scoring", "dialogue"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    spec = importlib.util.spec_from_file_location("pushed_babychat", folder / "babychat.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    assert module.Scorer.__module__ == "scoring" and module.strip_tag.__module__ == "dialogue"
    assert Path(sys.modules["scoring"].__file__).parent == folder
    for name in ("scoring", "dialogue"):
        sys.modules.pop(name, None)


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"`babyhub space run` exited with {process.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"nothing listened on port {port} within {timeout} s")


def test_space_run_serves_the_pushed_space(pushed_space, tmp_path):
    from gradio_client import Client

    folder, hub, _ = pushed_space
    port = free_port()
    log = (tmp_path / "space.log").open("w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hub_tools", "space", "run", str(folder), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for_port(port, process)
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        result = client.predict("what is that ?", "it looks like a gun .", "you do it like that .", api_name="/score")
        assert list(result) == ["tiny-baby-chat", "tiny-baby-chat@checkpoint-2"]
        assert {r["prefers"] for r in result.values()} <= {"a", "b"}
        assert result["tiny-baby-chat@checkpoint-2"]["commit"] == hub["commits"]["checkpoint-2"]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def test_models_for_another_space_than_the_chat_are_refused(capsys):
    metric = SPACE_DIR.parent / "dialogue_minpairs"
    assert main(["space", "push", str(metric), "--repo-id", "ns/metric", "--models", "ns/baby"]) == 2
    assert "is not the chat Space (it has no babychat.py)" in capsys.readouterr().err
