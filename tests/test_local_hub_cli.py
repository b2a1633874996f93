"""`babyhub hub serve` as a user runs it: a process, a root folder, a token file it creates."""

import os
import signal
import socket
import subprocess
import sys
import time

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            httpx.get(f"{url}/api/models", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("babyhub hub serve did not come up")


def _serve(root, port):
    cmd = [sys.executable, "-m", "hub_tools", "hub", "serve", "--root", str(root), "--port", str(port)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_hub_serve_creates_a_token_file_never_prints_it_and_keeps_data_across_restarts(tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    root = tmp_path / "hub"
    proc = _serve(root, port)
    try:
        _wait_up(url, proc)
        token = (root / "tokens").read_text().split()[0]
        assert oct((root / "tokens").stat().st_mode & 0o777) == "0o600"
        auth = {"authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/api/whoami-v2", headers=auth).status_code == 200
        assert httpx.post(f"{url}/api/repos/create", json={"name": "m", "organization": "me"}).status_code == 401
        assert (
            httpx.post(f"{url}/api/repos/create", json={"name": "m", "organization": "me"}, headers=auth).status_code
            == 200
        )
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert token not in out + err
    assert f"HF_ENDPOINT={url}" in err and "HF_HUB_DISABLE_XET=1" in err
    proc = _serve(root, port)
    try:
        _wait_up(url, proc)
        assert httpx.get(f"{url}/api/models/me/m").json()["id"] == "me/m"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_hub_serve_with_a_missing_token_file_is_a_clear_error(tmp_path):
    env = {**os.environ}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub_tools",
            "hub",
            "serve",
            "--root",
            str(tmp_path / "r"),
            "--token-file",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2 and "--token-file" in result.stderr and "not found" in result.stderr
