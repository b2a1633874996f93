"""The package keeps its layers: the CLI is a face, the Hub client and the local hub share only a vocabulary.

Each rule is checked on the real tree, and each rule is shown to catch the violation it exists for, so that
deleting a rule from `RULES` fails a test here.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hub_tools"

CLIENT, SERVER = "hub_tools.hub", "hub_tools.local_hub"
ENTRY_POINTS = {"hub_tools.__main__"}  # `python -m hub_tools` is the CLI's own door


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, `from a import b` counted as `a.b` and `a`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def package_imports() -> dict[str, set[str]]:
    """Module name -> the modules it imports, for every module of hub_tools."""
    return {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def subpackages() -> set[str]:
    return {_module_name(p.parent / "__init__.py") for p in PACKAGE.glob("*/__init__.py")}


# ------------------------------------------------------------------------------------------------- the rules
def below_cli_imports_cli(module: str, imported: str, packages: set[str]) -> bool:
    """A library module never imports the CLI: the face depends on the library, not the other way round."""
    return module not in ENTRY_POINTS and not _within(module, "hub_tools.cli") and _within(imported, "hub_tools.cli")


def client_and_server_meet(module: str, imported: str, packages: set[str]) -> bool:
    """The Hub client and the local hub never import each other; both import `hub_tools.repos`."""
    return (_within(module, CLIENT) and _within(imported, SERVER)) or (
        _within(module, SERVER) and _within(imported, CLIENT)
    )


def root_imports_subpackage(module: str, imported: str, packages: set[str]) -> bool:
    """A root module (the ground and the bundled modules) never reaches up into a subpackage."""
    is_root = module.count(".") == 1 and module not in packages and module not in ENTRY_POINTS
    return is_root and any(_within(imported, package) for package in packages)


def argparse_outside_cli(module: str, imported: str, packages: set[str]) -> bool:
    """Only the CLI parses command lines."""
    return imported == "argparse" and not _within(module, "hub_tools.cli")


RULES = [below_cli_imports_cli, client_and_server_meet, root_imports_subpackage, argparse_outside_cli]


def violations(imports: dict[str, set[str]], packages: set[str]) -> list[tuple[str, str, str]]:
    return [
        (rule.__name__, module, imported)
        for module, names in imports.items()
        for imported in sorted(names)
        for rule in RULES
        if rule(module, imported, packages)
    ]


def test_the_tree_keeps_its_layers():
    found = violations(package_imports(), subpackages())
    assert found == [], "\n".join(f"{rule}: {module} imports {imported}" for rule, module, imported in found)


PACKAGES = {"hub_tools.cli", "hub_tools.hub", "hub_tools.local_hub", "hub_tools.evaluation"}
BREAKING = {
    "below_cli_imports_cli": {"hub_tools.evaluation.sweep": {"hub_tools.cli._options"}},
    "client_and_server_meet": {"hub_tools.hub.publish": {"hub_tools.local_hub.storage"}},
    "root_imports_subpackage": {"hub_tools.scoring": {"hub_tools.evaluation"}},
    "argparse_outside_cli": {"hub_tools.hub.sync": {"argparse"}},
}


@pytest.mark.parametrize("rule", [rule.__name__ for rule in RULES])
def test_each_rule_catches_its_violation(rule):
    found = violations(BREAKING[rule], PACKAGES)
    assert [r for r, _, _ in found] == [rule]


def test_every_rule_has_a_breaking_example():
    assert set(BREAKING) == {rule.__name__ for rule in RULES}


def test_allowed_imports_pass():
    allowed = {
        "hub_tools.cli.eval": {"hub_tools.evaluation", "argparse", "hub_tools.repos"},
        "hub_tools.hub.publish": {"hub_tools.repos", "hub_tools.errors"},
        "hub_tools.local_hub.app": {"hub_tools.repos"},
        "hub_tools.__main__": {"hub_tools.cli"},
        "hub_tools.scoring": {"torch"},
    }
    assert violations(allowed, PACKAGES) == []


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    result = subprocess.run([sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("filename", "flagged"),
    [
        ("hub_tools/data/example.py", True),
        ("hub_tools/local_hub/example.py", True),
        ("hub_tools/scoring_example.py", True),
        ("hub_tools/cli/example.py", False),
        ("hub_tools/study/example.py", False),
        ("train_dpo.py", False),
    ],
)
def test_only_the_faces_print(filename, flagged):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--stdin-filename", filename, "--select", "T20", "-"],
        cwd=ROOT,
        input='print("hello")\n',
        capture_output=True,
        text=True,
    )
    assert ("T201" in result.stdout) is flagged, result.stdout + result.stderr


def test_print_rule_is_selected():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--stdin-filename", "hub_tools/data/example.py", "-"],
        cwd=ROOT,
        input='print("hello")\n',
        capture_output=True,
        text=True,
    )
    assert "T201" in result.stdout, "ruff's print rule (T20) must stay selected in pyproject.toml"
