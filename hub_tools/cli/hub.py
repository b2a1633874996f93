"""`babyhub hub serve` and `babyhub hub sync`: the offline hub and its mirror to huggingface.co.

    babyhub hub serve --root ~/babyhub-hub                       # http://127.0.0.1:8787, token in ROOT/tokens
    babyhub hub serve --root ~/babyhub-hub --run-spaces          # and run every Gradio Space
    export HF_ENDPOINT=http://127.0.0.1:8787 HF_HUB_DISABLE_XET=1 \\
        HF_TOKEN=$(head -n1 ~/babyhub-hub/tokens | cut -d' ' -f1)   # a line may go on with user=/orgs=/role=
    babyhub hub sync --check --from http://127.0.0.1:8787 --from-token-file ~/babyhub-hub/tokens \\
        --to https://huggingface.co --repo me/baby-dpo             # what the destination would refuse; writes nothing
    babyhub hub sync --from http://127.0.0.1:8787 --from-token-file ~/babyhub-hub/tokens \\
        --to https://huggingface.co --repo me/baby-dpo --repo datasets/me/child-dpo-preferences
    babyhub hub migrate --root ~/babyhub-hub     # a root written by babyhub before the git store (serve does it too)
    babyhub hub fsck --root ~/babyhub-hub        # every ref -> commit -> tree -> blob/LFS object; exit 1 at the first
    babyhub hub gc --root ~/babyhub-hub          # unreferenced objects older than a day (safe beside a running serve)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hub_tools import errors
from hub_tools.cli import _options
from hub_tools.hubenv import is_local_endpoint


def register(subparsers) -> None:
    """Add `hub serve` and `hub sync` (with `--check`) to `babyhub`."""
    hub_sub = _options.add_command_group(
        subparsers, "hub", help="Run a local Hub-compatible server, mirror repos between hubs", metavar="HUB_COMMAND"
    )

    serve = _options.add_command(hub_sub, "serve", handle_hub_serve)
    serve.add_argument("--root", required=True, type=Path, help="storage folder (created; survives restarts)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    serve.add_argument("--port", type=int, default=8787)
    serve.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help="tokens, one per line: TOKEN [user=NAME] [orgs=A,B] [role=read|write] (default: ROOT/tokens, created "
        "with one random write token)",
    )
    serve.add_argument(
        "--run-spaces",
        action="store_true",
        help="also run every Gradio Space's app, restarted on each commit to its main branch",
    )

    sync = _options.add_command(hub_sub, "sync", handle_hub_sync)
    sync.add_argument("--from", dest="source", required=True, help="source endpoint, e.g. http://127.0.0.1:8787")
    sync.add_argument("--to", dest="dest", required=True, help="destination endpoint, e.g. https://huggingface.co")
    sync.add_argument(
        "--repo",
        action="append",
        default=None,
        metavar="[TYPE/]NS/NAME",
        help="repo to mirror (repeatable; TYPE is models, datasets or spaces; default: all repos)",
    )
    for end, name in (("from", "source"), ("to", "destination")):
        sync.add_argument(
            f"--{end}-token-file",
            type=Path,
            default=None,
            help=f"file whose first line is the {name} token (default: HF_TOKEN / saved login)",
        )
    sync.add_argument(
        "--check",
        action="store_true",
        help="write nothing: ask the destination what it would refuse (namespaces, spellings, ref names, cards); "
        "exit 1 if anything",
    )

    root_help = "the local hub's storage folder (what `hub serve --root` was given)"
    root_dir = _options.existing_dir("the local hub's storage folder")
    migrate = _options.add_command(hub_sub, "migrate", handle_hub_migrate)
    migrate.add_argument("--root", required=True, type=root_dir, help=root_help)

    fsck = _options.add_command(hub_sub, "fsck", handle_hub_fsck)
    fsck.add_argument("--root", required=True, type=root_dir, help=root_help)
    fsck.add_argument("--no-hash-lfs", action="store_true", help="check LFS objects' sizes only, not their SHA-256")
    fsck.add_argument("--all", action="store_true", help="report every problem instead of stopping at the first")

    gc = _options.add_command(hub_sub, "gc", handle_hub_gc)
    gc.add_argument("--root", required=True, type=root_dir, help=root_help)
    gc.add_argument(
        "--grace-hours",
        type=float,
        default=24.0,
        help="spare anything younger than this: uploads waiting for their commit, pushes in flight (default: 24, "
        "as long as an LFS upload grant lives)",
    )


def handle_hub_serve(args: argparse.Namespace) -> int:
    """Serve a local Hub (models, datasets, spaces) from a folder."""
    from hub_tools.local_hub.server import serve
    from hub_tools.local_hub.tokens import ensure_token_file
    from hub_tools.local_hub.xet import startup_hint

    root = args.root.expanduser().resolve()
    with errors.from_flag("--token-file"):
        token_file = ensure_token_file(root, args.token_file)
    if not is_local_endpoint(f"http://{args.host}"):
        print(
            f"babyhub hub serve: warning: listening on {args.host}, not loopback: anyone who can reach this "
            "machine can read public repos",
            file=sys.stderr,
        )
    url = f"http://{args.host}:{args.port}"
    # The token itself is never printed: point at the file (a line may carry user=/orgs=/role= after the token).
    print(
        f"babyhub local hub: {url}  root={root}{'  (running Spaces)' if args.run_spaces else ''}\n"
        f"clients: export HF_ENDPOINT={url} HF_HUB_DISABLE_XET=1 HF_TOKEN=$(head -n1 {token_file} | cut -d' ' -f1)\n"
        f"{startup_hint(url)}",
        file=sys.stderr,
        flush=True,
    )
    serve(root, host=args.host, port=args.port, token_file=token_file, run_spaces=args.run_spaces)
    return 0


def handle_hub_sync(args: argparse.Namespace) -> int:
    """Mirror repos with all branches and tags from one hub to another."""
    from hub_tools.hub.sync import sync_repos
    from hub_tools.local_hub.tokens import read_first_token

    tokens = {}
    for end in ("from", "to"):
        path = getattr(args, f"{end}_token_file")
        with errors.from_flag(f"--{end}-token-file"):
            tokens[end] = None if path is None else read_first_token(path)
    # The check asks the destination about exactly the mirror the sync would make.
    ends = (args.source.rstrip("/"), args.dest.rstrip("/"))
    mirror = {"repos": args.repo, "source_token": tokens["from"], "dest_token": tokens["to"]}
    if args.check:
        from hub_tools.hub.sync import check_sync

        check = check_sync(*ends, **mirror)
        for problem in check.problems:
            print(f"  refused: {problem}")
        if not check.ok:
            print(f"check failed: {len(check.problems)} problem(s) in {len(check.repos)} repo(s); nothing was written")
            return 1
        print(f"check passed: {args.dest} would accept the mirror of {len(check.repos)} repo(s); nothing was written")
        return 0
    report = sync_repos(*ends, **mirror)
    print(
        f"synced {len(report.repos)} repo(s): {report.commits} commit(s), {report.files_uploaded} file(s) uploaded, "
        f"{report.branches_created} branch(es) and {report.tags_created} tag(s) created"
        + ("" if report.changed else " — already up to date")
    )
    for tag in report.skipped_tags:
        print(f"  not mirrored: tag {tag} (its commit is on no branch)")
    return 0


def handle_hub_migrate(args: argparse.Namespace) -> int:
    """Turn a root written by an older babyhub into git repositories."""
    from hub_tools.local_hub.migrate import migrate_root

    report = migrate_root(args.root)
    for label in report.repos:
        print(f"  migrated: {label}")
    if not report.repos:
        print(f"nothing to migrate: {args.root} is already a git-backed hub root")
        return 0
    print(
        f"migrated {len(report.repos)} repo(s) to git: {report.commits} commit(s), {report.lfs_objects} LFS object(s)"
        + (f", {report.dropped_commits} unreachable commit(s) dropped" if report.dropped_commits else "")
    )
    return 0


def handle_hub_fsck(args: argparse.Namespace) -> int:
    """Check every ref, commit, tree, blob and LFS object; exit 1 at the first fault."""
    from hub_tools.local_hub.maintenance import fsck

    report = fsck(args.root, hash_lfs=not args.no_hash_lfs, stop_at_first=not args.all)
    for problem in report.problems:
        print(f"  problem: {problem}")
    counts = (
        f"{report.repos} repo(s), {report.commits} commit(s), {report.trees} tree(s), {report.blobs} blob(s), "
        f"{report.lfs_objects} LFS object(s)"
    )
    if not report.ok:
        print(f"fsck failed after {counts}: restore the damaged object from a clone or a backup")
        return 1
    print(f"fsck passed: {counts}")
    return 0


def handle_hub_gc(args: argparse.Namespace) -> int:
    """Remove unreferenced git and LFS objects older than a grace period."""
    from hub_tools.local_hub.maintenance import gc

    if args.grace_hours < 0:
        raise errors.BabyhubError(f"--grace-hours must be 0 or more, not {args.grace_hours:g}")
    report = gc(args.root, grace_seconds=args.grace_hours * 3600)
    print(
        f"gc: {report.git_objects_dropped} git object(s) dropped ({report.packs_rewritten} pack(s) rewritten), "
        f"{report.lfs_objects_removed} LFS object(s) removed ({report.lfs_bytes_removed} bytes), "
        f"{report.tmp_removed} temporary and {report.cache_removed} cache entr(ies) removed"
    )
    if report.skipped_lfs_reason:
        print(f"  LFS objects kept: {report.skipped_lfs_reason}")
    return 0
