"""The rooms stay small and the imports one-way: no module over 500 lines, no class over 200, and
no import cycle among inspector's modules, counting imports inside functions and under
TYPE_CHECKING (the layers themselves are import-linter's contracts, run by .ci/run)."""

import ast

from conftest import REPO

PACKAGE = REPO / "inspector"


def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.parts:
            continue  # alembic scripts, loaded from files
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = (path, ast.parse(path.read_text()))
    return modules


def _imports(name: str, path, tree: ast.Module, known: set[str]) -> set[str]:
    """The inspector modules `name` imports anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from package import module` imports that module; `from module import name`, the module.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_module_over_500_lines_and_no_class_over_200():
    too_long = []
    for name, (path, tree) in _modules().items():
        lines = len(path.read_text().splitlines())
        if lines > 500:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 200:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_long, too_long


def test_no_import_cycle_among_the_modules():
    modules = _modules()
    graph = {name: _imports(name, path, tree, set(modules)) for name, (path, tree) in modules.items()}
    # A package's __init__ importing its own submodules is how a package opens its door: not a cycle
    # unless a submodule imports the package back through that door.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_the_cycle_check_finds_a_cycle():
    """The check above is not vacuous: two modules importing each other are one cycle."""
    a = ast.parse("from . import b\n")
    b = ast.parse("def f():\n    from .a import x\n")
    known = {"inspector", "inspector.a", "inspector.b"}
    assert _imports("inspector.a", PACKAGE / "a.py", a, known) == {"inspector.b"}
    assert _imports("inspector.b", PACKAGE / "b.py", b, known) == {"inspector.a"}
