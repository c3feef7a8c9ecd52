"""The packages of src/vidd form layers, and no module imports from a layer above its own (docs/architecture.md).
Every import is read, those inside functions too."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "vidd"
LAYERS = [
    {"core"},
    {"diffusion", "data", "eval", "chem"},
    {"rewards"},
    {"training", "guidance"},
    {"tasks"},
    {"run"},
    {"bench", "cli", "__main__", "__init__"},
]
LEVEL = {name: level for level, names in enumerate(LAYERS) for name in names}


def top_package(module: str) -> str | None:
    """vidd.training.trainer -> training; vidd -> __init__; not vidd -> None."""
    parts = module.split(".")
    if parts[0] != "vidd":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] if node.module == "vidd" else [node.module]
            out += [(node.lineno, name) for name in names]
    return out


MODULES = sorted(SRC.rglob("*.py"))


def test_every_package_has_a_layer():
    packages = {p.relative_to(SRC).parts[0].removesuffix(".py") for p in MODULES}
    assert packages <= set(LEVEL), packages - set(LEVEL)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_import(path):
    own = LEVEL[path.relative_to(SRC).parts[0].removesuffix(".py")]
    upward = [(line, name) for line, name in imported_modules(path)
              if (pkg := top_package(name)) is not None and LEVEL.get(pkg, -1) > own]
    assert not upward, f"{path.relative_to(SRC)} imports from a higher layer: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: an import of vidd.tasks inside a function of a core module is found."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from vidd.tasks import Task\n    import vidd.run\n")
    names = [name for _, name in imported_modules(module)]
    assert names == ["vidd.tasks", "vidd.run"] and {top_package(n) for n in names} == {"tasks", "run"}
