"""Every public function and method of the library states what it returns.

Read with ast (nothing is imported): top-level functions and the methods of top-level classes in
cwm/, probes/ and pretrain/ whose names (and whose class's name) do not start with "_";
``__init__`` aside, ``__call__`` included.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cwm", "probes", "pretrain")


def _public_functions(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node.name, node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for item in node.body:
                if (isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and (not item.name.startswith("_") or item.name == "__call__")):
                    yield f"{node.name}.{item.name}", item


def missing_return_annotations(root: Path = ROOT) -> list[str]:
    missing = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            missing += [f"{path.relative_to(root).as_posix()}:{node.lineno} {name}"
                        for name, node in _public_functions(tree) if node.returns is None]
    return missing


def test_every_public_function_has_a_return_annotation():
    assert missing_return_annotations() == []


def test_the_check_sees_a_missing_annotation(tmp_path):
    (tmp_path / "cwm").mkdir()
    (tmp_path / "cwm" / "m.py").write_text(
        "def f(x): return x\n"
        "def _private(x): return x\n"
        "def g(x) -> int: return x\n"
        "class A:\n"
        "    def __init__(self): pass\n"
        "    def h(self): pass\n"
        "    def __call__(self): pass\n"
        "    def _p(self): pass\n")
    for package in ("probes", "pretrain"):
        (tmp_path / package).mkdir()
    assert missing_return_annotations(tmp_path) == ["cwm/m.py:1 f", "cwm/m.py:6 A.h", "cwm/m.py:7 A.__call__"]
