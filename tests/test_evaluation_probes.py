"""The one evaluation engine (cwm.evaluation_probes): ``cwm eval`` and benchmarks/accuracy.py run
it, each pair's flow probe runs once, and segments are scored."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

import probes.flow
import probes.pair  # noqa: F401  (imported before flow_runs replaces probes.flow.flow)
from cwm import evaluation
from cwm.cli.main import main
from cwm.config import CWMConfig
from cwm.errors import ConfigError
from cwm.model import build_model
from cwm.predictor import CWMPredictor

ROOT = Path(__file__).resolve().parents[1]
SUITE = (evaluation.SuiteEntry(11, (32, 32), "objects"), evaluation.SuiteEntry(11, (32, 32), "stereo"))


@pytest.fixture
def small_suite(monkeypatch):
    monkeypatch.setattr(evaluation, "default_suite", lambda quick=False: SUITE)
    monkeypatch.setattr(evaluation, "generator_speed", lambda *a, **k: 1.0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = CWMConfig(img_size=(32, 32), patch_size=8, enc_dim=32, enc_depth=1, enc_heads=2,
                    dec_dim=32, dec_depth=1, dec_heads=2)
    return build_model(cfg)


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory) -> str:
    """The tiny model's weights folder."""
    from cwm.checkpoints import save_pretrained

    folder = tmp_path_factory.mktemp("weights")
    save_pretrained(model, folder)
    return str(folder)


@pytest.fixture
def flow_runs(monkeypatch) -> list:
    """Every run of the flow probe, recorded (the probe still runs)."""
    runs, real = [], probes.flow.flow
    monkeypatch.setattr(probes.flow, "flow", lambda *a, **k: runs.append(k) or real(*a, **k))
    return runs


def _scores(report: dict) -> dict:
    """The report's scores, without timings."""
    return {kind: {name: {k: v for k, v in row.items() if not k.startswith("ms_")} for name, row in rows.items()}
            for kind, rows in report.items() if kind in ("flow", "occlusion", "depth", "segments")}


def test_cwm_eval_runs_the_flow_probe_once_per_pair_and_scores_segments(capsys, tmp_path, small_suite, weights,
                                                                        flow_runs):
    out_json = tmp_path / "report.json"
    assert main(["eval", "--weights", weights, "--device", "cpu", "--out", str(out_json)]) == 0
    out = capsys.readouterr().out
    report = json.loads(out_json.read_text())
    assert len(flow_runs) == len(SUITE) == report["pairs_probed"]  # flow, occlusion, depth, confidence: one run
    for kind in ("flow", "occlusion", "depth"):
        assert "cwm" in report[kind]
    assert report["depth"]["cwm"]["num_scenes"] == 1
    for name in ("cwm", "cwm_jacobian", "dis_flow_cc"):
        row = report["segments"][name]
        assert row["num_scenes"] >= 1 and 0 <= row["miou"] <= 1 and not math.isnan(row["iou"])
    assert "cwm_jacobian" in out and "segments (point)" in out and "cwm confidence" in out
    assert set(report["cwm_confidence"]) == {"epe_confident_half", "epe_rest", "ratio"}


def test_eval_of_some_probes_scores_only_those(capsys, tmp_path, small_suite, weights, flow_runs):
    assert main(["eval", "--probes", "segments", "--weights", weights, "--device", "cpu",
                 "--out", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert flow_runs == [] and "cwm" not in report["flow"] and "cwm_confidence" not in report
    assert "cwm" in report["segments"]


def test_accuracy_benchmark_is_the_same_engine(capsys, tmp_path, small_suite, weights, flow_runs):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import accuracy
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    bench = tmp_path / "sub" / "bench.json"
    assert accuracy.main(["--weights", weights, "--out", str(bench)]) == 0
    assert len(flow_runs) == len(SUITE)
    assert main(["eval", "--weights", weights, "--device", "cpu", "--out", str(tmp_path / "e.json")]) == 0
    assert _scores(json.loads(bench.read_text())) == _scores(json.loads((tmp_path / "e.json").read_text()))


def test_unknown_probe_or_method_kind_is_refused(model):
    from cwm.evaluation_probes import evaluate

    with pytest.raises(ConfigError, match="unknown probes"):
        evaluate(CWMPredictor(model, device="cpu"), probes=["flow", "segment"])
    with pytest.raises(ConfigError, match="unknown method kinds"):
        evaluate(None, extra={"tracks": {}})
