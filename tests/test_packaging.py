"""Packaging: one version, a licence that matches, package data that exists, extras that cover the suite."""
from __future__ import annotations

import ast
import glob
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

import cwm
from cwm.cli.main import main

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; the checks read pyproject.toml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _dist(requirement: str) -> str:
    """The normalised distribution name of a requirement string."""
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)).lower()


def test_the_version_is_written_once(capsys):
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cwm.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", cwm.__version__)
    try:
        assert importlib.metadata.version("cwm") == cwm.__version__, "reinstall: pip install -e ."
    except importlib.metadata.PackageNotFoundError:
        pass  # run from a checkout that is not installed
    assert main(["--version"]) == 0 and capsys.readouterr().out == f"cwm {cwm.__version__}\n"


def test_the_licence_file_matches_the_metadata():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the cwm authors" in text


def test_package_data_globs_match_files():
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            found = [p for p in glob.glob(str(ROOT / package / pattern), recursive=True) if Path(p).is_file()]
            assert found, f"package-data {package}: {pattern!r} matches no file"
    assert (ROOT / "cwm" / "weights" / "default" / "model.safetensors").is_file()


def _third_party_imports() -> set[str]:
    """Top-level modules the tests import that are neither the standard library nor this repo."""
    local = {p.stem for p in ROOT.glob("*/*.py")} | {p.name for p in ROOT.iterdir() if p.is_dir()}
    names = set()
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "importorskip" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in local and n != "__future__"}


def test_the_dev_extra_covers_everything_the_suite_imports():
    declared = {_dist(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["dev"]}
    owners = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_third_party_imports()):
        dists = {_dist(d) for d in owners.get(module, [module])}
        if not dists & declared:
            missing[module] = sorted(dists)
    assert not missing, f"imported by tests but in neither the dependencies nor the dev extra: {missing}"


def test_the_extras_exist_and_dev_includes_hub():
    extras = PROJECT["optional-dependencies"]
    assert {"dev", "hub", "tensorboard"} <= set(extras)
    assert {_dist(r) for r in extras["hub"]} <= {_dist(r) for r in extras["dev"]}  # the hub tests run


def test_opencv_4_and_5_log_level_apis(monkeypatch):
    # OpenCV 5 sets the log level through cv2.utils.logging; 4.x (>= the 4.8 floor) has only
    # cv2.setLogLevel. Both must work: the suite itself runs on whichever is installed.
    cv2 = pytest.importorskip("cv2")
    from cwm.video import import_cv2

    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    calls = []
    if hasattr(cv2.utils, "logging"):
        monkeypatch.delattr(cv2.utils, "logging")
    monkeypatch.setattr(cv2, "setLogLevel", calls.append, raising=False)
    assert import_cv2() is cv2 and calls == [2]  # LOG_LEVEL_ERROR
