"""Classical baselines and the evaluation harness they run in."""

import json

import numpy as np
import pytest

from cwm import baselines, evaluation, metrics
from cwm.errors import ConfigError, InputError
from cwm.synthetic import make_scene


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(seed, (64, 64), preset=preset)
            for seed in (1, 2) for preset in ("camera", "objects", "stereo")]


def test_flow_baselines_shapes_and_dtypes(scenes):
    frame0, frame1 = scenes[0].pair()
    for name, method in baselines.FLOW_BASELINES.items():
        flow = method(frame0, frame1)
        assert flow.shape == (64, 64, 2) and flow.dtype == np.float32, name
    assert not baselines.zero_flow(frame0, frame1).any()


def test_dis_beats_zero_flow(scenes):
    for scene in scenes:
        dis = metrics.flow_metrics(baselines.dis_flow(*scene.pair()), scene.flow[0],
                                   scene.occlusion[0])
        zero = metrics.flow_metrics(baselines.zero_flow(*scene.pair()), scene.flow[0],
                                    scene.occlusion[0])
        assert dis["epe_noc"] < 0.6 * zero["epe_noc"]


def test_bad_frames_raise_input_error(scenes):
    frame0, _ = scenes[0].pair()
    with pytest.raises(InputError, match="frame1"):
        baselines.dis_flow(frame0, frame0.astype(np.float32))
    with pytest.raises(InputError, match="differ"):
        baselines.farneback_flow(frame0, frame0[:32])
    with pytest.raises(ConfigError, match="preset"):
        baselines.dis_flow(frame0, frame0, preset="slow")


def test_forward_backward_check_on_exact_flows():
    forward = np.zeros((8, 10, 2), np.float32)
    forward[..., 0] = 2.0
    backward = -forward
    occ = baselines.forward_backward_occlusion(forward, backward)
    expected = np.zeros((8, 10), bool)
    expected[:, 8:] = True                              # x + 2 >= 9.5 leaves the frame
    assert np.array_equal(occ, expected)
    inconsistent = baselines.forward_backward_occlusion(forward, np.zeros_like(forward))
    assert inconsistent.all()                           # |f + b|^2 = 4 > 0.01 * 4 + 0.5


def test_dis_occlusion_and_disparity_are_informative(scenes):
    occ = [baselines.dis_occlusion(*s.pair()) for s in scenes]
    counts = np.sum([metrics.confusion_counts(o, s.occlusion[0]) for o, s in zip(occ, scenes)], 0)
    assert metrics.precision_recall_f1(*counts)["f1"] > 0.3
    for scene in (s for s in scenes if s.stereo):
        inv = baselines.dis_inverse_depth(*scene.pair())
        assert metrics.depth_spearman(inv, scene.depth[0]) > 0.3
        assert metrics.depth_ordinal_accuracy(inv, scene.depth[0]) > 0.7


def test_default_suite_is_fixed():
    suite = evaluation.default_suite()
    assert len(suite) == 100 and len(set(suite)) == 100
    assert {e.size for e in suite} == {(64, 64), (128, 128)}
    assert {e.preset for e in suite} == {"camera", "objects", "roll_zoom", "parts", "stereo"}
    assert len({e.seed for e in suite}) == 100
    assert suite[0] == evaluation.SuiteEntry(1000, (64, 64), "camera")
    quick = evaluation.default_suite(quick=True)
    assert len(quick) == 20 and set(quick) <= set(suite)


def test_harness_runs_extra_methods_without_a_registry(scenes):
    def find(frame0, frame1):                           # the scene a pair comes from
        return next(s for s in scenes if np.array_equal(s.frames[:2], np.stack([frame0, frame1])))

    def oracle(frame0, frame1):                         # a method that knows the answer
        return find(frame0, frame1).flow[0]

    report = evaluation.run_flow_suite({"zero": baselines.zero_flow, "oracle": oracle}, scenes)
    assert report["oracle"]["epe"] == 0.0 and report["oracle"]["acc_1px"] == 1.0
    assert report["zero"]["epe"] > 0.3
    assert set(report["zero"]) >= {"epe", "epe_noc", "fl_all", "acc_1px", "acc_3px", "acc_5px"}
    occ = evaluation.run_occlusion_suite({"oracle": lambda f0, f1: find(f0, f1).occlusion[0]},
                                         scenes)
    assert occ["oracle"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    depth = evaluation.run_depth_suite({"truth": lambda f0, f1: find(f0, f1).inverse_depth(0)},
                                       scenes)
    assert depth["truth"]["ordinal"] == 1.0 and depth["truth"]["num_scenes"] == 2


def test_run_benchmark_quick_report_is_json(monkeypatch):
    monkeypatch.setattr(evaluation, "QUICK_SCENES_PER_CELL", 1)
    report = evaluation.run_benchmark(quick=True, speed_seconds=0.05)
    text = json.dumps(report)
    assert set(json.loads(text)) == {"suite", "generator", "flow", "occlusion", "depth", "segments"}
    assert set(report["flow"]) == {"zero", "farneback", "dis"}
    assert report["flow"]["dis"]["epe"] < report["flow"]["zero"]["epe"]
    assert set(report["occlusion"]["dis_fb"]) == {"precision", "recall", "f1"}
    assert set(report["depth"]["dis_disparity"]) >= {"ordinal", "spearman"}
    assert report["generator"]["pairs_per_s_64x64"] > 0
    table = evaluation.format_report(report)
    assert "farneback" in table and "pairs/s" in table
