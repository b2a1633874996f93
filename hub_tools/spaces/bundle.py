"""Bundle a Space folder with the babyhub modules it uses, so it runs on the Hub without babyhub installed.

A Space under `spaces/` imports babyhub code that must stay single-sourced in `hub_tools/` (the scorer
above all). Two ways lead there, and the bundle step handles both:

- a **symlink** in the checkout, e.g. `spaces/dialogue_minpairs/scoring.py -> ../../hub_tools/scoring.py`:
  needed where the folder must work as it is in a checkout (`evaluate.load("spaces/dialogue_minpairs")`
  reads `scoring.py` beside the metric). The bundle copies the file the link points to;
- an **import** of a hub_tools module by its bare name (`import scoring`, `from scoring import Scorer`,
  `from .scoring import ...`, or `from hub_tools.scoring import ...` with a bare-name fallback): the bundle
  places `hub_tools/<name>.py` beside the Space's files, and then the modules those import, and so on.

A module placed in a Space must not import `hub_tools` itself (a Space has only its requirements), which
the bundle checks. Nothing is ever copied by hand, so the Space always ships the scorer of the commit.
"""

from __future__ import annotations

import ast
import shutil
import tempfile
from pathlib import Path

from hub_tools.errors import BabyhubError
from hub_tools.paths import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "hub_tools"
SKIPPED = {"__pycache__", ".git", ".gradio", ".ipynb_checkpoints", "flagged"}


def build_space_bundle(space_dir: str | Path, out_dir: str | Path) -> Path:
    """Copy the Space to `out_dir` (replacing it) with every hub_tools module it uses beside it; returns out_dir."""
    space = Path(space_dir).resolve()
    out = Path(out_dir).resolve()
    if not (space / "README.md").is_file():
        raise BabyhubError(f"{space} is not a Space folder: it has no README.md with the Space front matter")
    if out == space or space in out.parents:
        raise BabyhubError(f"the bundle of {space} must be built outside it, not in {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and swap it in at the end: a failed build leaves no half-written bundle.
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _copy_space(space, staging)
        _place_modules(staging)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _copy_space(space: Path, target: Path) -> None:
    """Copy the Space's files; a symlink becomes a copy of the file it points to (which must be in the repo)."""
    for path in sorted(space.rglob("*")):
        relative = path.relative_to(space)
        if any(part in SKIPPED for part in relative.parts) or path.suffix == ".pyc":
            continue
        destination = target / relative
        if path.is_symlink():
            source = path.resolve()
            if not source.is_file():
                raise BabyhubError(f"{path} is a broken link (to {source}): point it at a file in the repository")
            if REPO_ROOT.resolve() not in source.parents:
                raise BabyhubError(f"{path} links outside the repository ({source}): link only to hub_tools modules")
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        elif path.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def _place_modules(bundle: Path) -> None:
    """Place hub_tools/<name>.py beside the Space for every such module its Python files import (transitively)."""
    pending = sorted(bundle.glob("*.py"))
    while pending:
        file = pending.pop()
        for name in sorted(_imported_module_names(file)):
            source = PACKAGE_DIR / f"{name}.py"
            destination = bundle / f"{name}.py"
            if not source.is_file() or destination.exists():
                continue
            shutil.copyfile(source, destination)
            pending.append(destination)
    # Every hub_tools module in the bundle (placed, or copied through a link) must stand alone.
    for file in sorted(bundle.glob("*.py")):
        if (PACKAGE_DIR / file.name).is_file() and file.read_bytes() == (PACKAGE_DIR / file.name).read_bytes():
            _check_standalone(file)


def _imported_module_names(file: Path) -> set[str]:
    """Bare module names a file imports: `import x`, `from x import`, `from .x import`, `from hub_tools.x import`."""
    try:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    except SyntaxError as err:
        raise BabyhubError(f"{file}: cannot be parsed ({err.msg}, line {err.lineno}); fix the syntax") from err
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level <= 1:
            modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "hub_tools" and len(parts) == 2:
                names.add(parts[1])
            elif len(parts) == 1:
                names.add(parts[0])
    return names


def _check_standalone(file: Path) -> None:
    """A bundled hub_tools module may not import hub_tools outside a try/except fallback."""
    tree = ast.parse(file.read_text(encoding="utf-8"))
    guarded = {id(n) for t in ast.walk(tree) if isinstance(t, ast.Try) for s in t.body for n in ast.walk(s)}
    for node in ast.walk(tree):
        module = None
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module
        elif isinstance(node, ast.Import):
            module = node.names[0].name
        if module and module.split(".")[0] == "hub_tools" and id(node) not in guarded:
            raise BabyhubError(
                f"hub_tools/{file.name} imports {module} (line {node.lineno}), so it cannot run in a Space without "
                "babyhub: make it depend only on the Space's requirements, or keep it out of the Space"
            )
