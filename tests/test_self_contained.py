"""A fresh clone keeps the README's promises: nothing in the repo depends on files outside it.

The tracked files are copied into an empty temporary folder (no ``shared/`` or anything else
beside it); no file may point outside the repo, every relative link in the Markdown files must
resolve inside the copy, and the tests that read the official golden tensors pass there.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import cwm

ROOT = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not match itself.
_OUTSIDE = re.compile("|".join([
    re.escape("../" + "shared"),                       # the design folder beside the checkout
    re.escape("/work/" + "shared"),
    r"\bshared/(fixtures|DESIGN|STYLE|hooks)\b",
    r"\bDESIGN" + r"(\.md\b| §)",                        # the design notes now live in docs/design.md
]))
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
_TEXT = {".py", ".md", ".toml", ".yaml", ".yml", ".json", ".txt", ".cfg", ".sh", ".ini", ""}


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout (an sdist or a copy): nothing to compare against")
    return [f for f in out.stdout.decode().split("\0") if f]


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    """The tracked files (as they are in the working tree) in ``<tmp>/alone/cwm``."""
    dest = tmp_path_factory.mktemp("alone") / "cwm"
    for rel in _tracked():
        src = ROOT / rel
        if src.is_file():  # a file deleted in the working tree but not yet in git is skipped
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    assert not (dest.parent / "shared").exists()
    return dest


def _text_files(root: Path):
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in _TEXT and p.stat().st_size < 2_000_000:
            try:
                yield p, p.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def test_nothing_points_outside_the_repo(copy):
    hits = [f"{p.relative_to(copy)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for p, text in _text_files(copy) for m in _OUTSIDE.finditer(text)]
    assert not hits, "references to files outside the repo:\n" + "\n".join(hits)


def test_markdown_links_resolve_inside_the_repo(copy):
    broken = []
    for p, text in _text_files(copy):
        if p.suffix != ".md":
            continue
        for m in _LINK.finditer(text):
            target = m.group(1)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            resolved = (p.parent / target).resolve()
            if not resolved.exists() or copy.resolve() not in (resolved, *resolved.parents):
                broken.append(f"{p.relative_to(copy)}: {target}")
    assert not broken, "broken or outside links:\n" + "\n".join(broken)


def test_the_golden_tensor_tests_pass_in_the_copy(copy):
    # Bare pytest, as the README runs it, in the copy: the fixtures are found inside it.
    out = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
                          "tests/test_model.py", "-k", "golden"],
                         cwd=copy, capture_output=True, text=True, timeout=600)
    cases = len(list((copy / "tests" / "fixtures" / "official").glob("*.io.pt")))
    assert out.returncode == 0 and re.search(rf"\b{cases} passed\b", out.stdout) and "skipped" not in out.stdout, \
        out.stdout[-2000:] + out.stderr[-2000:]


def test_the_suite_runs_the_code_beside_it():
    # pyproject's pythonpath puts the repo root first: a clone tests its own cwm, whatever else is
    # installed, and tests can import demos/ and benchmarks/ without an install.
    assert Path(cwm.__file__).resolve().is_relative_to(ROOT)
