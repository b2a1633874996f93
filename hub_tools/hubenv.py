"""Client settings for talking to a local hub.

huggingface_hub reads HF_ENDPOINT and HF_HUB_DISABLE_XET when it is imported, and 2.x uploads through
Xet whenever hf_xet is installed without asking the server. A local hub has no Xet, so these must be
set before the first import of huggingface_hub/datasets/transformers/evaluate.
"""

import os
import sys
import warnings
from urllib.parse import urlparse

LOCAL_HUB_SETTINGS = {
    "HF_HUB_DISABLE_XET": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_UPDATE_DOWNLOAD_COUNTS": "0",
    "DISABLE_SAFETENSORS_CONVERSION": "1",
}


def is_local_endpoint(endpoint: str | None) -> bool:
    """True for an endpoint on this machine (loopback), i.e. a babyhub local hub."""
    if not endpoint:
        return False
    host = urlparse(endpoint).hostname or ""
    return host in {"localhost", "::1"} or host.startswith("127.")


def configure_for_endpoint(endpoint: str | None = None) -> None:
    """Set HF_ENDPOINT (if given) and, for a local hub, the settings above (never overriding the user's)."""
    if endpoint:
        os.environ["HF_ENDPOINT"] = endpoint.rstrip("/")
    if not is_local_endpoint(os.environ.get("HF_ENDPOINT")):
        return
    for key, value in LOCAL_HUB_SETTINGS.items():
        os.environ.setdefault(key, value)
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import constants

        if constants.ENDPOINT.rstrip("/") != os.environ["HF_ENDPOINT"] or not constants.HF_HUB_DISABLE_XET:
            warnings.warn(
                "huggingface_hub was imported before the local hub settings were applied; "
                "set HF_ENDPOINT before importing it.",
                stacklevel=2,
            )
