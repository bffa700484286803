"""
The layering rules, checked over the source rather than trusted to review.

``protocols/`` holds wire formats and thin protocols: it may import other
``protocols`` modules and the shared, system-agnostic parts of
``marketplace`` (``marketplace.metrics``, ``marketplace.store`` and its
errors, ``marketplace.net`` ...), never a system's package
(``marketplace.branch``, ``marketplace.market``, ``marketplace.laptop``,
``marketplace.tradechat``).  The store sits below the systems too: its
backends hold the rules they share in ``marketplace.store``.  And no two
project modules import each other, directly or through a longer chain.
"""

from __future__ import annotations

import ast
from pathlib import Path

from twisted.trial.unittest import TestCase

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("protocols", "marketplace")
SYSTEMS = ("branch", "market", "laptop", "tradechat")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_names(name: str, path: Path, modules=()) -> set[str]:
    """
    The dotted names ``path`` imports anywhere (module level or inside
    functions).  ``from package import submodule`` names the submodule only
    when it is one of C{modules}: importing a sibling through its package is
    not an import of the package's own code.
    """
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            members = {f"{source}.{alias.name}" for alias in node.names}
            names.update(members)
            if not members <= set(modules):
                names.add(source)
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's ``from p import m`` means ``p.m``)."""
    return {
        name: {
            imported for imported in imported_names(name, path, modules)
            if imported in modules and imported != name
        }
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def system_imports(layer: str) -> list[str]:
    """What the modules of package C{layer} import from a system's package."""
    forbidden = tuple(f"marketplace.{system}" for system in SYSTEMS)
    return sorted(
        f"{name} imports {imported}"
        for name, path in project_modules().items()
        if name == layer or name.startswith(layer + ".")
        for imported in imported_names(name, path)
        if imported in forbidden or imported.startswith(tuple(f + "." for f in forbidden))
    )


class ProtocolLayerTests(TestCase):
    def test_protocols_never_import_a_system(self):
        self.assertEqual(system_imports("protocols"), [])

    def test_the_store_never_imports_a_system(self):
        self.assertEqual(system_imports("marketplace.store"), [])

    def test_the_check_sees_a_system_import(self):
        """The walk above would catch an offence (guards against a test that cannot fail)."""
        source = Path(self.mktemp())
        source.write_text("def f():\n    from marketplace.tradechat import service\n")
        self.assertIn(
            "marketplace.tradechat.service",
            imported_names("protocols._layer_probe", source))


class CycleTests(TestCase):
    def test_no_two_modules_import_each_other(self):
        graph = import_graph(project_modules())
        self.assertEqual(cycles(graph), [])

    def test_cycles_are_found(self):
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
        self.assertEqual(cycles(graph), [["a", "b", "c"]])
