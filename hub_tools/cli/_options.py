"""The options babyhub's commands share, declared once, and the parser that words their errors.

As huggingface_hub's `cli/_cli_utils.py` does, a command module adds a shared option with one call
(`add_repo_id(parser, ...)`), so `--repo-id`, `--revision`, `--private`, `--model`, `--device`, `--batch-size`
and `--workers` mean and check the same everywhere. Values are checked by argparse `type=` functions, which
raise `ArgumentTypeError` with the problem; `ArgumentParser.error` then puts the flag first, so a usage error
reads like any other babyhub error: `babyhub push: error: --repo-id 'x' must be NAMESPACE/NAME ...`, exit 2.
What several commands print (`pushed`) is worded here too.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from hub_tools import repos
from hub_tools.errors import BabyhubError


class UsageError(BabyhubError):
    """A command line argparse refused; `prog` is the (sub)command it was parsing, e.g. `babyhub space push`."""

    def __init__(self, prog: str, message: str, usage: str = ""):
        super().__init__(message)
        self.prog, self.usage = prog, usage

    @property
    def command(self) -> str | None:
        """The top-level command (`space` of `babyhub space push`), or None for `babyhub` itself."""
        words = self.prog.split()
        return words[1] if len(words) > 1 else None


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with babyhub's error contract: raise `UsageError` (flag first) instead of exiting."""

    def error(self, message: str):
        # argparse says "argument --flag: problem"; babyhub's errors say "--flag problem", as errors.from_flag does.
        match = re.fullmatch(r"argument ([^:]+): (.*)", message, flags=re.S)
        raise UsageError(self.prog, f"{match.group(1)} {match.group(2)}" if match else message, self.format_usage())


# ------------------------------------------------------------------------------------------------- types
def repo_id(text: str) -> str:
    """argparse type of a repo id: `NAMESPACE/NAME` in the Hub's grammar (`repos.check_repo_id`)."""
    try:
        return repos.check_repo_id(text)
    except repos.InvalidName as err:
        if text.count("/") != 1:
            raise argparse.ArgumentTypeError(f"{text!r} must be NAMESPACE/NAME, e.g. me/baby-dpo") from err
        raise argparse.ArgumentTypeError(str(err)) from err


def revision(text: str) -> str:
    """argparse type of a revision: a branch, a tag or a commit id (`repos.check_revision`)."""
    try:
        return repos.check_revision(text)
    except repos.InvalidName as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (0 is refused, never taken for a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {value})")
    return value


def existing_file(what: str) -> Callable[[str], Path]:
    """argparse type of a file that must exist; `what` says what it should be (e.g. "a minimal-pair CSV")."""
    return _existing(Path.is_file, lambda text: f"{text}: no such file; give {what}.")


def existing_dir(what: str) -> Callable[[str], Path]:
    """argparse type of a folder that must exist; `what` says what it should hold."""
    return _existing(Path.is_dir, lambda text: f"{text} is not a folder: give {what}.")


def _existing(is_kind: Callable[[Path], bool], refusal: Callable[[str], str]) -> Callable[[str], Path]:
    def existing(text: str) -> Path:
        if not is_kind(Path(text)):
            raise argparse.ArgumentTypeError(refusal(text))
        return Path(text)

    return existing


class LazyChoices:
    """argparse `choices` read on first use: `babyhub --help` must not import what they come from (e.g. the
    scoring methods live beside the scorer, whose torch import takes seconds)."""

    def __init__(self, load: Callable[[], tuple[str, ...]]):
        self._load = load

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __contains__(self, value: object) -> bool:
        return value in self._load()


# ------------------------------------------------------------------------------------------------ output
def pushed(result, source) -> str:
    """The line a push command prints: the new commit, or that the repo already held exactly this."""
    if result.commit_oid is None:
        return f"{result.repo_id}: already up to date at {result.revision}, no new commit ({result.url})"
    return f"{result.repo_id}: pushed {source} to {result.revision} as commit {result.commit_oid} ({result.url})"


# ----------------------------------------------------------------------------------------------- options
def add_command(subparsers, name: str, handler: Callable[[argparse.Namespace], int | None], **kwargs):
    """`babyhub ... NAME`, run by `handler`, whose docstring is the command's help.

    Its first paragraph is the one line `babyhub --help` lists, the whole docstring the `--help` description: the
    words about a command live with its code, as in the CLIs built on click and typer (huggingface_hub's), and
    every command is registered the same way. Returns the parser to add options to.
    """
    doc = inspect.getdoc(handler)
    if not doc:
        raise TypeError(f"{handler.__qualname__} has no docstring: its first paragraph is the help of `{name}`")
    summary = " ".join(doc.split("\n\n", 1)[0].split()).removesuffix(".")
    kwargs.setdefault("description", doc)
    parser = subparsers.add_parser(name, help=summary.replace("%", "%%"), **kwargs)
    parser.set_defaults(func=handler)
    return parser


def add_command_group(subparsers, name: str, *, help: str, metavar: str = "COMMAND"):
    """`babyhub NAME COMMAND ...`: a command made of subcommands; returns the subparsers to add them to."""
    group = subparsers.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", metavar=metavar, required=True)


def add_repo_id(parser: argparse.ArgumentParser, *, help: str = "the repository, NAMESPACE/NAME") -> None:
    parser.add_argument("--repo-id", required=True, type=repo_id, metavar="NS/NAME", help=help)


def add_revision(parser, *, help: str, default: str | None = None, group=None) -> None:
    (group or parser).add_argument("--revision", type=revision, default=default, help=help)


def add_private(parser, *, what: str = "the repository") -> None:
    parser.add_argument("--private", action="store_true", help=f"create {what} as private")


def add_pairs(parser) -> None:
    """`--pairs` and `--tok-pairs`: the word- and token-length-matched minimal-pair CSVs (each must exist)."""
    what = "a minimal-pair CSV (see ../shared/data/README.md)"
    parser.add_argument(
        "--pairs",
        type=existing_file(what),
        default=None,
        help="word-length-matched minimal-pair CSV (default: babyhub's small made-up sample, not CHILDES)",
    )
    parser.add_argument(
        "--tok-pairs",
        type=existing_file(what),
        default=None,
        help="token-length-matched minimal-pair CSV, evaluated as its own split (-eval-tokens)",
    )


def add_out(parser, *, help: str) -> None:
    """`--out`: the folder a command writes (what it must hold, or whether it must be new, is the command's)."""
    parser.add_argument("--out", required=True, metavar="DIR", help=help)


def add_train(parser, *, help: str = "training preference dataset: folder or Hub dataset id") -> None:
    """`--train`: the DPO training split a command reads (a `babyhub data build` folder or a Hub dataset id)."""
    parser.add_argument("--train", required=True, metavar="DATASET", help=help)


def add_model(parser, *, help: str = "Hub model id or local model folder") -> None:
    parser.add_argument("--model", required=True, help=help)


def add_device(parser, *, help: str = "torch device (default: cpu)") -> None:
    parser.add_argument("--device", default="cpu", help=help)


def add_batch_size(parser, *, help: str, default: int | None = None) -> None:
    parser.add_argument("--batch-size", type=positive_int, default=default, help=help)


def add_workers(parser) -> None:
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="CPU scoring threads, each scoring whole batches (default: torch's thread count)",
    )
