"""Test session set-up.

Every test talks to a local hub through the real clients. huggingface_hub, datasets, transformers and
evaluate read HF_ENDPOINT, HF_HOME and HF_HUB_DISABLE_XET when they are imported, so the port is chosen
and the environment is set here, before any test module imports them. The server itself is started by
the `local_hub` fixture (tests/fixtures/hub.py) on that port.
"""

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SESSION_DIR = Path(tempfile.mkdtemp(prefix="babyhub-tests-"))
HUB_PORT = _free_port()
HUB_TOKEN = "hf_babyhub_test_token_0123456789"
HUB_URL = f"http://127.0.0.1:{HUB_PORT}"

os.environ.update(
    {
        "HF_ENDPOINT": HUB_URL,
        "HF_HOME": str(SESSION_DIR / "hf_home"),
        "HF_TOKEN": HUB_TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "DISABLE_SAFETENSORS_CONVERSION": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "WANDB_DISABLED": "true",
        "TRACKIO_DISABLED": "true",
    }
)
os.environ.pop("HF_HUB_OFFLINE", None)

# Real data lives beside the repository, never inside it.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
LEN_PAIRS = SHARED_DATA / "minpairs" / "len_pairs_no_overlap_1.csv"
TOK_PAIRS = SHARED_DATA / "minpairs" / "tok_pairs_no_overlap_1.csv"
BLIMP_DIR = SHARED_DATA / "blimp"

pytest_plugins = ["tests.fixtures.hub", "tests.fixtures.data", "tests.fixtures.models", "tests.fixtures.git"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (../shared/data); a missing folder is a set-up error, not a skip."""
    assert LEN_PAIRS.is_file(), f"real data not found at {SHARED_DATA}: the repository must sit beside shared/"
    return SHARED_DATA


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return SESSION_DIR


def pytest_sessionfinish(session, exitstatus):
    """Remove the session's temp dir (hub storage, models, caches) unless BABYHUB_KEEP_TEST_DIR is set."""
    if not os.environ.get("BABYHUB_KEEP_TEST_DIR"):
        shutil.rmtree(SESSION_DIR, ignore_errors=True)
