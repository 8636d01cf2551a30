"""The architecture holds: no import cycle between plugkit's modules (imports inside functions
included), and each layer imports only the layers below it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "plugkit"
# what each layer may import from plugkit, besides itself: the contract (family, formats,
# options, errors) at the bottom, then loading, then the core, then the verbs on top
ALLOWED = {
    "plugkit.formats": {"plugkit.family", "plugkit.errors"},
    "plugkit.family": set(),
    "plugkit.options": {"plugkit.errors"},
    "plugkit.data": {"plugkit.family", "plugkit.formats", "plugkit.errors"},
    # the aim family's core: a graphical model and AIM's rounds, on the formats' rows
    "plugkit.marginals": {"plugkit.formats", "plugkit.errors"},
    "plugkit.families": {"plugkit.family", "plugkit.formats", "plugkit.options", "plugkit.ops",
                         "plugkit.errors", "plugkit.marginals"},
    "plugkit.metrics": {"plugkit.data", "plugkit.formats", "plugkit.errors", "plugkit.atomic",
                        "plugkit.rundir", "plugkit.trainer"},
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("plugkit"):
                targets |= {resolve(f"{node.module}.{a.name}") for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith("plugkit")}
        graph[name] = targets - {name, "plugkit"}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_import_cycle():
    assert _cycle(_imports(_modules())) is None, " -> ".join(_cycle(_imports(_modules())))


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", ALLOWED)
def test_a_layer_imports_only_what_is_below_it(layer):
    graph = _imports(_modules())
    upward = sorted(f"{name} imports {target}" for name, targets in graph.items()
                    if name == layer or name.startswith(layer + ".")
                    for target in targets
                    if not (target == layer or target.startswith(layer + "."))
                    and not any(target == ok or target.startswith(ok + ".")
                                for ok in ALLOWED[layer]))
    assert upward == []


def test_the_wheel_ships_every_package():
    """pyproject.toml lists the packages a wheel holds: one left out installs fine in editable
    mode and fails at import from a wheel (plugkit.formats was missing once)."""
    import tomllib

    listed = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"][
        "setuptools"]["packages"]
    found = {".".join(p.parent.relative_to(PACKAGE.parent).parts)
             for p in PACKAGE.rglob("__init__.py")}
    assert sorted(found - set(listed)) == [] and sorted(set(listed) - found) == []
