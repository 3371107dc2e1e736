"""The layout's rules, checked on the source: no import circles, a ground floor that imports nothing above it,
modules of one concern (none over ~350 lines), peft only under strategies/, a README that fits on a screen and
lists exactly the registered strategies, docs that point nowhere outside the repository."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from helpers import ROOT

from ftcompare.strategies import names

PACKAGE = ROOT / "src" / "ftcompare"
GROUND_FLOOR = {"ftcompare.errors", "ftcompare.io", "ftcompare.settings", "ftcompare.resume", "ftcompare.resolvers"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str) -> set[str]:
    """The package's modules that `name` imports (anywhere in it), and the packages those live in when they
    are not `name`'s own: importing a module runs its package's __init__ first."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ftcompare"):
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("ftcompare")}
    if name == "ftcompare.strategies":  # its __init__ imports every module of the package (pkgutil)
        found |= {module for module in MODULES if module.startswith(f"{name}.")}
    own_package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for target in list(found):
        parts = target.split(".")
        found |= {".".join(parts[:i]) for i in range(2, len(parts)) if not own_package.startswith(".".join(parts[:i]))}
    return (found & MODULES.keys()) - {name, "ftcompare"}


def test_no_import_circles():
    graph = {name: imports(name) for name in MODULES}
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            assert state.get(target) != "open", "import circle: " + " -> ".join([*path, name, target])
            if target not in state:
                visit(target, [*path, name])
        state[name] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [])


@pytest.mark.parametrize("name", sorted(GROUND_FLOOR))
def test_the_ground_floor_imports_nothing_above_it(name):
    assert imports(name) <= GROUND_FLOOR, imports(name) - GROUND_FLOOR


def test_modules_stay_small():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert not {name: lines for name, lines in sizes.items() if lines > 350}, "split these by concern"


def test_peft_is_wired_in_under_strategies_only():
    users = [p for p in PACKAGE.rglob("*.py") if "get_peft_model" in p.read_text()]
    assert users and all(p.parent == PACKAGE / "strategies" for p in users), users


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_fits_on_a_screen_and_shows_the_two_commands():
    text = readme()
    assert len(text.splitlines()) <= 150
    assert "make run" in text and "make test" in text


def test_readme_strategy_table_lists_exactly_the_registered_strategies():
    rows = re.findall(r"^\| `([a-z0-9_]+)` \|", readme(), flags=re.MULTILINE)
    assert sorted(rows) == names()


def test_docs_point_nowhere_outside_the_repository():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = doc.read_text()
        assert "shared/" not in text, doc
        for target in re.findall(r"\]\(([^)#]+)", text):
            if not target.startswith(("http://", "https://")):
                assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"
