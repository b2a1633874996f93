"""The face: `babyhub`'s parser, shared options, handler names, usage errors and token-file flags."""

import argparse
import ast
import inspect
import subprocess
import sys

import pytest

from hub_tools.cli import _options, build_parser, main
from tests.conftest import HUB_URL


def handlers(parser: argparse.ArgumentParser):
    """(command words, handler) of every leaf command of the parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from handlers(sub)
    func = parser.get_default("func")
    if func is not None:
        yield parser.prog, func


def test_every_command_has_a_handler_named_alike_in_the_cli_package():
    found = dict(handlers(build_parser()))
    assert {"babyhub data build", "babyhub push", "babyhub hub serve", "babyhub eval blimp", "babyhub demo"} <= set(
        found
    )
    for prog, func in found.items():
        words = prog.split()[1:]
        assert func.__module__.startswith("hub_tools.cli."), prog
        assert func.__name__ == "handle_" + "_".join(words).replace("-", "_"), prog


def test_a_handler_docstring_is_its_command_help():
    """The first paragraph of a handler's docstring is the line its group lists, the whole its `--help` text."""
    listed, parsers = {}, {}

    def walk(parser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    sub = action.choices[choice.dest]
                    listed[sub.prog], parsers[sub.prog] = choice.help, sub
                    walk(sub)

    walk(build_parser())
    for prog, func in handlers(build_parser()):
        doc = inspect.getdoc(func)
        assert listed[prog] == " ".join(doc.split("\n\n")[0].split()).removesuffix(".").replace("%", "%%"), prog
        if prog != "babyhub demo":  # the demo shows the stages its library module lists
            assert parsers[prog].description == doc, prog
    help_text = parsers["babyhub eval compare"].format_help()
    assert "(Newcombe's hybrid score interval for paired data)" in " ".join(help_text.split())
    assert "%%" not in help_text  # argparse does not %-format a description: the docstring is shown as written

    def handle_nothing(args):
        return 0

    with pytest.raises(TypeError, match="handle_nothing has no docstring: its first paragraph is the help of `x`"):
        _options.add_command(argparse.ArgumentParser().add_subparsers(), "x", handle_nothing)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["push", ".", "--repo-id", "a/b/c"], "babyhub push: error: --repo-id 'a/b/c' must be NAMESPACE/NAME"),
        (["push", ".", "--repo-id", "api/x"], "babyhub push: error: --repo-id invalid repo id 'api/x'"),
        (["push", ".", "--repo-id", "a/b", "--revision", "a..b"], "--revision invalid revision 'a..b'"),
        (["eval", "minpairs", "--model", "m", "--data", "d", "--workers", "two"], "--workers must be a whole number"),
        (["eval", "blimp", "--model", "m", "--suite", "s", "--method", "answer_sum"], "--method invalid choice"),
        (["demo", "--baby-steps", "0"], "babyhub demo: error: --baby-steps must be at least 1 (got 0)"),
        (["space", "push", "spaces/baby_chat"], "the following arguments are required: --repo-id"),
    ],
)
def test_usage_errors_name_the_flag_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.splitlines()[1].startswith("usage: babyhub ")  # then how the command is called


def test_help_does_not_import_the_scorer():
    """`babyhub --help` and parsing stay fast: nothing imports torch until a command runs."""
    script = (
        "import sys; from hub_tools.cli import build_parser; "
        "build_parser().parse_args(['eval', 'minpairs', '--model', 'm', '--data', 'd', '--method', 'answer_sum']); "
        "print(sorted(m for m in ('torch', 'hub_tools.scoring', 'huggingface_hub') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    # --method is checked against scoring.METHODS: only then is the scorer imported.
    assert {"hub_tools.scoring", "torch"} <= set(ast.literal_eval(run.stdout))
    script = script.replace(", '--method', 'answer_sum'", "")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.stdout.strip() == "[]", run.stderr


def test_sync_token_files_are_named_by_their_flag(tmp_path, capsys):
    argv = ["hub", "sync", "--from", HUB_URL, "--to", "http://127.0.0.1:9"]
    assert main([*argv, "--from-token-file", str(tmp_path / "missing")]) == 2
    assert f"--from-token-file {tmp_path / 'missing'}: file not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.write_text("# only a comment\n\n")
    assert main([*argv, "--to-token-file", str(empty)]) == 2
    assert f"--to-token-file {empty} is empty: put the token on its first line" in capsys.readouterr().err


def test_one_token_file_writer(tmp_path):
    from hub_tools.local_hub.tokens import ensure_token_file, read_first_token

    path = ensure_token_file(tmp_path / "hub")
    token = read_first_token(path)
    assert path == tmp_path / "hub" / "tokens" and token.startswith("hf_local_") and len(token) == 41
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert ensure_token_file(tmp_path / "hub") == path and read_first_token(path) == token  # kept, not rewritten
