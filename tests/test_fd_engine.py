"""The default engine mode of flow: central finite differences in one batched forward call per
chunk, on the fused attention kernel. It must read what forward mode ("jvp") reads, and a batch of
pairs must read exactly what its pairs read one by one."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import cwm
from cwm.config import CWMConfig
from cwm.model import build_model
from cwm.predictor import CWMPredictor
from cwm.synthetic import make_scene
from probes import jacobian, oracles
from probes.core import DEFAULT_MODE, ProbeOptions
from probes.flow import flow
from probes.jacobian import FrameFunction, gaussian_bumps, probe_masks, responses

#: Flow agreement of "fd" and "jvp", px. Both read the same Jacobian: central differences with
#: eps = 1e-2 on a [0, 1] image differ from it by O(eps^2) of the response's curvature, and the
#: float32 rounding of a prediction (~6e-8) becomes ~3e-6 of a unit-peak response after the
#: division by 2 eps. Measured: <= 2e-5 px on the smooth oracles, <= 0.026 px on visible pixels
#: of the layered one (a weak, partly hidden bump's fit), <= 0.011 px on the float32 CWM's raw
#: single-window reading (seeds 1-3, 64 and 128 px).
FLOW_AGREE_PX = 0.05


@pytest.fixture(scope="module")
def cases():
    two = oracles.layered_case(background=(1.0, 0.0),
                               discs=(((22.0, 24.0), 10.0, (4.0, 1.0)), ((42.0, 40.0), 9.0, (-3.0, -2.0))))
    return {"translation": oracles.translation_case(), "rotation": oracles.rotation_case(), "two_objects": two}


@pytest.fixture(scope="module")
def default_model():
    return cwm.load("default")  # the embedded float32 tiny_64


def _tiny32() -> CWMPredictor:
    torch.manual_seed(0)
    cfg = CWMConfig(img_size=(32, 32), patch_size=8, enc_dim=32, enc_depth=2, enc_heads=2,
                    dec_dim=32, dec_depth=1, dec_heads=2)
    return CWMPredictor(build_model(cfg), device="cpu")


class Counting:
    """A predictor wrapper that records the batch size of every ``predict_fn`` call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        for name in ("size", "patch_size", "grid", "num_frames", "device"):
            setattr(self, name, getattr(inner, name))

    def predict_fn(self, video, mask):
        self.calls.append(video.shape[0])
        return self.inner.predict_fn(video, mask)


def test_fd_is_the_default_mode():
    assert DEFAULT_MODE == "fd" and ProbeOptions().mode == "fd" and ProbeOptions().fd_central


def test_central_fd_is_one_batched_forward_per_chunk_on_fused_attention(cases, monkeypatch):
    case = cases["translation"]

    def no_math_attention():
        raise AssertionError("fd entered the math attention backend")

    monkeypatch.setattr(jacobian, "math_attention", no_math_attention)
    counted = Counting(case.oracle)
    # 64 px, one source per patch, max_flow 5: 4 tangents x 2 masks x (+eps, -eps) = 16 items.
    flow(counted, case.frame0, case.frame1, max_flow=5.0, chunk_size=64)
    assert counted.calls == [16]  # one call, no separate base pass
    counted.calls.clear()
    flow(counted, case.frame0, case.frame1, max_flow=5.0, chunk_size=4)  # 2 tangents per call
    assert counted.calls == [8, 8]
    with pytest.raises(AssertionError, match="math attention"):
        flow(counted, case.frame0, case.frame1, max_flow=5.0, mode="jvp")


@pytest.mark.parametrize("name", ["translation", "rotation", "two_objects"])
def test_fd_responses_match_jvp_on_oracles(cases, name):
    oracle = cases[name].oracle
    g = torch.Generator().manual_seed(0)
    f0, f1 = torch.rand(2, 1, 3, 64, 64, generator=g)
    fn = FrameFunction(oracle, f1, probe_masks(1, 2, oracle.grid, 1, 0.25, 0))
    centers = torch.tensor([[5.0, 6.0], [20.5, 9.0], [40.0, 33.0]])
    v = gaussian_bumps(centers, [torch.tensor([i]) for i in range(3)], (64, 64), 1.0)
    jvp, fd = responses(fn, f0, v, "jvp"), responses(fn, f0, v, "fd")
    # The oracle is linear in frame 0: only float32 rounding / (2 eps) separates the two.
    torch.testing.assert_close(fd, jvp, rtol=0, atol=1e-4 * float(jvp.abs().max()))


@pytest.mark.parametrize("name", ["translation", "rotation", "two_objects"])
def test_fd_flow_matches_jvp_on_oracles(cases, name):
    case = cases[name]
    a = flow(case.oracle, case.frame0, case.frame1, mode="jvp", stride=1, max_flow=5.0, fill_occluded=False)
    b = flow(case.oracle, case.frame0, case.frame1, mode="fd", stride=1, max_flow=5.0, fill_occluded=False)
    np.testing.assert_array_equal(a.occlusion, b.occlusion)
    visible = ~a.occlusion
    assert np.abs(a.flow - b.flow)[visible].max() < FLOW_AGREE_PX


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("side", [64, 128])
def test_fd_flow_matches_jvp_on_float32_cwm(default_model, seed, side):
    f0, f1 = make_scene(seed, (side, side)).pair(0)
    raw = {"multiscale": False, "verify": False}
    a, b = flow(default_model, f0, f1, mode="jvp", **raw), flow(default_model, f0, f1, mode="fd", **raw)
    assert np.abs(a.flow - b.flow).max() < FLOW_AGREE_PX
    # The default path adds the photometric verification, a discrete choice per pixel: a residual
    # a hair's breadth from the error of the flow so far may flip. Measured: p99 <= 0.011 px,
    # mean <= 0.0015 px, a handful of flipped pixels.
    a, b = flow(default_model, f0, f1, mode="jvp"), flow(default_model, f0, f1)
    d = np.abs(a.flow - b.flow).max(-1)
    assert np.quantile(d, 0.99) < FLOW_AGREE_PX and (d > FLOW_AGREE_PX).mean() < 0.01


def test_probe_masks_depend_on_the_seed_alone():
    one = probe_masks(1, 2, (8, 8), 2, 0.25, seed=3)
    many = probe_masks(4, 2, (8, 8), 2, 0.25, seed=3)
    assert torch.equal(many, one.repeat(4, 1))
    assert not torch.equal(probe_masks(1, 2, (8, 8), 2, 0.25, seed=4), one)
    assert (~one[0, 64:] & ~one[1, 64:]).sum() == 0  # a pair's masks reveal disjoint patches


@pytest.mark.parametrize("mode", ["fd", "jvp"])
@pytest.mark.parametrize("side", [64, 96])  # one window; two pyramid levels of tiles
def test_a_batch_reads_exactly_as_its_pairs_one_by_one(cases, mode, side):
    scenes = [make_scene(s, (side, side)).pair(0) for s in (1, 2, 3)]
    f0, f1 = np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes])
    for predictor in (cases["translation"].oracle, _tiny32()):
        batch = flow(predictor, f0, f1, mode=mode)
        for i, res in enumerate(batch):
            alone = flow(predictor, f0[i], f1[i], mode=mode)
            np.testing.assert_array_equal(res.flow, alone.flow)
            np.testing.assert_array_equal(res.occlusion, alone.occlusion)
            np.testing.assert_array_equal(res.confidence, alone.confidence)
