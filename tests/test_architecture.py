"""The layers of docs/architecture.md hold: every module of unijob/ is in exactly one layer, no
module imports a higher layer, and no import cycle exists (module-level and function-level imports
alike; imports under ``if TYPE_CHECKING:`` are annotations and do not count)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "unijob"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def module_names() -> set[str]:
    names = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def layers() -> dict[str, int]:
    """``module -> layer`` from the layer table of docs/architecture.md (rows ``| 3 | ... | `a`, `b` | ...``)."""
    table: dict[str, int] = {}
    for line in ARCHITECTURE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            for name in re.findall(r"`([\w.]+)`", cells[2]):
                module = name if name == "unijob" else f"unijob.{name}"
                assert module not in table, f"{module} is in two layers of docs/architecture.md"
                table[module] = int(cells[0])
    return table


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, known: set[str]) -> set[str]:
    """The unijob modules that ``module`` imports anywhere in its code."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "unijob")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "unijob":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in known else node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return {name for name in found if name in known}


def test_every_module_has_a_layer() -> None:
    known, table = module_names(), layers()
    assert sorted(known - table.keys()) == [], "add these modules to the layer table of docs/architecture.md"
    assert sorted(table.keys() - known) == [], "docs/architecture.md names modules that do not exist"


def test_no_module_imports_a_higher_layer() -> None:
    known, table = module_names(), layers()
    upward = [
        f"{module} (layer {table[module]}) imports {imported} (layer {table[imported]})"
        for module in sorted(known)
        for imported in sorted(imports_of(module, known))
        if table[imported] > table[module]
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    known = module_names()
    graph = {module: imports_of(module, known) for module in known}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                walk(imported, [*path, imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert cycles == []


def test_the_checker_sees_function_level_imports() -> None:
    """The checks above would pass vacuously if function-level imports went unseen."""
    assert "unijob.config" in imports_of("unijob.adapters.celery_worker", module_names())
