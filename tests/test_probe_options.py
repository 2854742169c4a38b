"""One unit system: user options (ProbeOptions, the caller's pixels) are resolved once into the
ModelOptions of a model-sized window (model pixels), the only options the engine takes."""
import dataclasses
import inspect
import typing
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from cwm.errors import ConfigError
from probes import affinity, pyramid
from probes.core import DEFAULT_MAX_FLOW_FRACTION, EngineOptions, ModelOptions, ProbeOptions, grid_probe
from probes.flow import flow, window_flow
from probes.jacobian import ProbePredictor
from probes.oracles import WarpOracle, texture

MODEL64 = SimpleNamespace(size=(64, 64), patch_size=8)


def test_resolve_converts_max_flow_to_model_pixels():
    window = ProbeOptions(max_flow=8).resolve(MODEL64, (128, 128))
    assert isinstance(window, ModelOptions)
    assert window.max_flow == 4.0 and window.stride == 8          # 128 px input on a 64 px model
    assert ProbeOptions(max_flow=8).resolve(MODEL64, (64, 64)).max_flow == 8.0
    # The larger of the two axis scales (conservative): 64/32 along the height.
    assert ProbeOptions(max_flow=3).resolve(MODEL64, (32, 256)).max_flow == 6.0
    # Default: a fraction of the input's smaller side, then converted.
    default = ProbeOptions().resolve(MODEL64, (128, 256))
    assert default.max_flow == pytest.approx(DEFAULT_MAX_FLOW_FRACTION * 128 * 0.5)
    assert ProbeOptions(stride=2).resolve(MODEL64, (128, 128)).stride == 2   # stride is already model pixels
    assert ProbeOptions().resolve(SimpleNamespace(size=(64, 64), patch_size=4), (64, 64)).stride == 4


def test_resolved_options_keep_the_engine_settings_and_nothing_else():
    user = ProbeOptions(mode="jvp", seed=3, sigma=1.5, num_masks=1, visible=0.1, pack=False, multiscale=False)
    window = user.resolve(MODEL64, (64, 64))
    engine = [f.name for f in dataclasses.fields(EngineOptions)]
    assert all(getattr(window, name) == getattr(user, name) for name in engine)
    assert {f.name for f in dataclasses.fields(ModelOptions)} == set(engine) | {"stride", "max_flow"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        window.max_flow = 1.0
    for bad in ({"stride": 0, "max_flow": 2.0}, {"stride": 8, "max_flow": -1.0},
                {"stride": 8, "max_flow": float("nan")}):
        with pytest.raises(ConfigError):
            ModelOptions(**bad)


def test_engine_entry_points_take_only_resolved_options():
    assert list(inspect.signature(grid_probe).parameters) == ["predictor", "f0", "f1", "opts", "mode", "masks"]
    assert list(inspect.signature(window_flow).parameters) == ["predictor", "f0", "f1", "opts", "masks"]
    for entry in (grid_probe, window_flow):
        hints = typing.get_type_hints(entry)
        assert hints["opts"] is ModelOptions and hints["predictor"] is ProbePredictor
    oracle = WarpOracle(np.zeros((64, 64, 2), np.float32), num_frames=2)
    f0 = torch.from_numpy(texture((64, 64), seed=0)).permute(2, 0, 1)[None].float() / 255
    window = ProbeOptions(mode="jvp").resolve(oracle, (64, 64))
    with pytest.raises(TypeError, match="resolve"):
        grid_probe(oracle, f0, f0, ProbeOptions(mode="jvp"), "jvp")
    with pytest.raises(TypeError, match="resolve"):
        window_flow(oracle, f0, f0, ProbeOptions(mode="jvp"))
    with pytest.raises(TypeError):  # the old form, stride and max_flow beside the options
        grid_probe(oracle, f0, f0, 8, 3.84, window, "jvp")
    with pytest.raises(TypeError):
        window_flow(oracle, f0, f0, 8, 3.84, window)
    moved, _ = grid_probe(oracle, f0, f0, window, "jvp")
    assert moved.shape == (1, 64, 64, 2) and moved.abs().max() < 0.05   # identical frames: no motion


def test_single_window_flow_reads_in_model_pixels_and_answers_in_input_pixels():
    """A 6 px shift of a 128 px pair on a 64 px model is 3 model pixels, found within max_flow
    8 input px = 4 model px; the answer comes back as 6 input pixels."""
    from scipy import ndimage

    big = texture((128, 128), seed=2)
    shifted = np.clip(ndimage.shift(big.astype(np.float64), (0, 6.0, 0), order=1), 0, 255).astype(np.uint8)
    back = np.zeros((64, 64, 2), np.float32)
    back[..., 0] = -3.0   # the oracle predicts frame 0 sampled at x - 3 model px: content moves by +3
    oracle = WarpOracle(back, num_frames=2)
    result = flow(oracle, big, shifted, max_flow=8, multiscale=False, mode="jvp")
    inner = result.flow[24:-24, 24:-24]
    assert result.flow.shape == (128, 128, 2)
    assert np.median(inner[..., 0]) == pytest.approx(6.0, abs=0.1) and abs(np.median(inner[..., 1])) < 0.1


def test_pyramid_resolves_each_level_through_the_same_step():
    seen = []

    def window(predictor, f0, f1, opts, masks=None):
        seen.append(opts)
        n, _, h, w = f0.shape
        return torch.zeros(n, h, w, 2, dtype=f0.dtype), torch.ones(n, h, w, dtype=f0.dtype), \
            torch.zeros(n, h, w, dtype=torch.bool)

    predictor = SimpleNamespace(size=(64, 64), patch_size=8, grid=(8, 8), num_frames=2, device=torch.device("cpu"))
    frames = torch.rand(1, 3, 256, 256)
    pyramid.pyramid_flow(predictor, window, frames, frames, ProbeOptions(max_flow=20, finest_side=None))
    tile = DEFAULT_MAX_FLOW_FRACTION * 64
    assert all(isinstance(o, ModelOptions) and o.stride == 8 for o in seen)
    assert [o.max_flow for o in seen] == [5.0, tile, tile]   # 20 input px at 64/256, then the residual
    seen.clear()
    pyramid.pyramid_flow(predictor, window, frames, frames, ProbeOptions(finest_side=None, stride=4))
    assert [(o.max_flow, o.stride) for o in seen] == [(tile, 4)] * 3


def test_segment_flow_reads_use_resolved_options(monkeypatch):
    """The poke protocol's counterfactual read: an image already at the model's size, so a poke
    of |d| model pixels is read within ceil(1.5 |d|) model pixels, stride the patch size."""
    import cwm

    predictor = cwm.load("default", device="cpu")
    seen = []
    real = affinity.window_flow

    def spy(predictor, f0, f1, opts, masks=None):
        seen.append(opts)
        return real(predictor, f0, f1, opts, masks=masks)

    monkeypatch.setattr(affinity, "window_flow", spy)
    image = texture((64, 64), seed=4)
    predictor.segment(image, points=[(30, 30)], directions=1, magnitudes=(0.5,))
    assert seen and all(isinstance(o, ModelOptions) for o in seen)
    assert {(o.stride, o.max_flow) for o in seen} == {(predictor.patch_size, 6.0)}   # d = 4 px: ceil(6)
