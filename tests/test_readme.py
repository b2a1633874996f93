"""The README's two set-up commands are the ones CI runs, in order, and nothing else."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith(("#", "set ", "cd "))]


def test_ci_runs_exactly_the_readme_commands():
    commands = readme_setup_commands()
    assert len(commands) == 2, "the README's Set-up gives exactly two commands: install + demo, then the tests"
    assert ci_commands() == commands


def test_the_install_command_brings_what_the_tests_need():
    install, tests = readme_setup_commands()
    for needed in ("chromium", "git-lfs", "torch==2.13.0", '-e ".[dev]"', "babyhub demo"):
        assert needed in install
    assert tests == "python -m pytest tests"
