"""The probe package imports in one direction: no cycle among its modules, counting imports at
module level and inside functions alike (read with ast, nothing is imported), and no import of
one probe module by another inside a function (without a cycle none is needed)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "probes"


def _modules() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def _imports(path: Path, modules: set[str]) -> list[tuple[str, bool]]:
    """``(imported probe module, inside a function)`` for every import in ``path``."""
    tree = ast.parse(path.read_text())
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "probes":
                names = [f"probes.{a.name}" for a in node.names]
            else:
                names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "probes" and len(parts) > 1 and parts[1] in modules:
                out.append((parts[1], id(node) in nested))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {dep for dep, _ in _imports(PACKAGE / f"{m}.py", modules) if dep != m} for m in modules}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(graph[m]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_finds_a_cycle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_probe_package_has_no_import_cycle():
    graph = _graph()
    assert {"core", "flow", "occlusion", "segments", "depth"} <= set(graph)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_no_function_level_import_between_probe_modules():
    modules = _modules()
    lazy = [(m, dep) for m in sorted(modules) for dep, inside in _imports(PACKAGE / f"{m}.py", modules) if inside]
    assert lazy == [], f"function-level imports of probe modules (module level is enough): {lazy}"


def test_pretraining_does_not_import_the_cli():
    import subprocess
    import sys

    code = ("import sys, pretrain.__main__, pretrain.train; "
            "print(sorted(m for m in sys.modules if m.startswith('cwm.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "[]"
