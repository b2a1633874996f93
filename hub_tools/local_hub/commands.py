"""`babyhub hub serve` and `babyhub hub sync`: the offline hub and its mirror to huggingface.co.

    babyhub hub serve --root ~/babyhub-hub                       # http://127.0.0.1:8787, token in ROOT/tokens
    export HF_ENDPOINT=http://127.0.0.1:8787 HF_HUB_DISABLE_XET=1 HF_TOKEN=$(head -n1 ~/babyhub-hub/tokens)
    babyhub hub sync --from http://127.0.0.1:8787 --from-token-file ~/babyhub-hub/tokens \\
        --to https://huggingface.co --repo me/baby-dpo --repo datasets/me/child-dpo-preferences
"""

import os
import secrets
import sys
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.hubenv import is_local_endpoint


def register(subparsers) -> None:
    """Add `hub serve` and `hub sync` to `babyhub`."""
    hub = subparsers.add_parser("hub", help="run a local Hub-compatible server, mirror repos between hubs")
    hub_sub = hub.add_subparsers(dest="hub_command", metavar="HUB_COMMAND", required=True)

    serve = hub_sub.add_parser("serve", help="serve a local Hub (models, datasets, spaces) from a folder")
    serve.add_argument("--root", required=True, type=Path, help="storage folder (created; survives restarts)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="write tokens, one per line (default: ROOT/tokens, created with a random token)",
    )
    serve.set_defaults(func=run_serve)

    sync = hub_sub.add_parser("sync", help="mirror repos with all branches and tags from one hub to another")
    sync.add_argument("--from", dest="source", required=True, help="source endpoint, e.g. http://127.0.0.1:8787")
    sync.add_argument("--to", dest="dest", required=True, help="destination endpoint, e.g. https://huggingface.co")
    sync.add_argument(
        "--repo",
        action="append",
        default=None,
        metavar="[TYPE/]NS/NAME",
        help="repo to mirror (repeatable; TYPE is models, datasets or spaces; default: all repos)",
    )
    sync.add_argument(
        "--from-token-file",
        type=Path,
        default=None,
        help="file whose first line is the source token (default: HF_TOKEN / saved login)",
    )
    sync.add_argument(
        "--to-token-file",
        type=Path,
        default=None,
        help="file whose first line is the destination token (default: HF_TOKEN / saved login)",
    )
    sync.set_defaults(func=run_sync)


def _ensure_token_file(root: Path, token_file: Path | None) -> Path:
    if token_file is not None:
        if not token_file.is_file():
            raise BabyhubError(f"--token-file {token_file}: file not found; create it with one token per line")
        return token_file
    token_file = root / "tokens"
    if not token_file.exists():
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"hf_local_{secrets.token_hex(16)}\n")
    return token_file


def run_serve(args) -> int:
    from hub_tools.local_hub.server import serve

    root = args.root.expanduser().resolve()
    token_file = _ensure_token_file(root, args.token_file)
    if not is_local_endpoint(f"http://{args.host}"):
        print(
            f"babyhub hub serve: warning: listening on {args.host}, not loopback: anyone who can reach this "
            "machine can read public repos",
            file=sys.stderr,
        )
    url = f"http://{args.host}:{args.port}"
    # The token itself is never printed: point at the file.
    print(
        f"babyhub local hub: {url}  root={root}\n"
        f"clients: export HF_ENDPOINT={url} HF_HUB_DISABLE_XET=1 HF_TOKEN=$(head -n1 {token_file})",
        file=sys.stderr,
        flush=True,
    )
    serve(root, host=args.host, port=args.port, token_file=token_file)
    return 0


def _read_token(path: Path | None) -> str | None:
    from hub_tools.local_hub.storage import read_token_file

    if path is None:
        return None
    if not path.is_file():
        raise BabyhubError(f"token file {path} not found")
    lines = read_token_file(path)
    if not lines:
        raise BabyhubError(f"token file {path} is empty: put the token on its first line")
    return lines[0]


def run_sync(args) -> int:
    from hub_tools.sync import sync_repos

    report = sync_repos(
        args.source.rstrip("/"),
        args.dest.rstrip("/"),
        repos=args.repo,
        source_token=_read_token(args.from_token_file),
        dest_token=_read_token(args.to_token_file),
    )
    print(
        f"synced {len(report.repos)} repo(s): {report.commits} commit(s), {report.files_uploaded} file(s) uploaded, "
        f"{report.branches_created} branch(es) and {report.tags_created} tag(s) created"
        + ("" if report.changed else " — already up to date")
    )
    for tag in report.skipped_tags:
        print(f"  not mirrored: tag {tag} (its commit is on no branch)")
    return 0
