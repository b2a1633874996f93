"""Xet, named: this hub stores files with Git LFS only; a client that tries Xet is told how to stop.

huggingface_hub 2.x uploads through Xet whenever `hf_xet` is installed, without asking the server; its Rust client
then asks `GET /api/{type}s/{id}/xet-write-token/{rev}` for a token. The hub answers a 400 whose message names
`HF_HUB_DISABLE_XET=1`, and logs the same advice. The Rust client does not show the server's message: what the user
sees is `CLIENT_ERROR` (read off huggingface_hub 2.4.0 with hf_xet installed), quoted here for the start-up message
and the README's troubleshooting.
"""

import logging
import time

logger = logging.getLogger("babyhub.local_hub")

FIX = "HF_HUB_DISABLE_XET=1"
MESSAGE = (
    "This hub has no Xet storage: the upload tried Xet because hf_xet is installed. Set HF_HUB_DISABLE_XET=1 in the "
    "environment before Python starts (export HF_HUB_DISABLE_XET=1), then run it again"
)
# What huggingface_hub 2.4 + hf_xet raise when HF_HUB_DISABLE_XET is not set (the endpoint and repo vary).
CLIENT_ERROR = (
    "ConnectionError: Network error: Request error: HTTP status client error (400 Bad Request), domain: "
    "{endpoint}/api/models/NAMESPACE/NAME/xet-write-token/main"
)
_LOG_EVERY = 60.0  # seconds between two log lines about Xet attempts
_last_logged = 0.0


def startup_hint(endpoint: str) -> str:
    """The lines `babyhub hub serve` prints at start-up about Xet."""
    return (
        f"uploads need {FIX} in the client's environment (hf_xet is used otherwise); without it they fail with\n"
        f"  {CLIENT_ERROR.format(endpoint=endpoint)}"
    )


def note_attempt(path: str) -> None:
    """Log (at most once a minute) that a client tried Xet, and the fix."""
    global _last_logged
    now = time.monotonic()
    if now - _last_logged >= _LOG_EVERY:
        _last_logged = now
        logger.warning("local hub: a client asked %s: it uses Xet; tell it to set %s", path, FIX)
