"""The predictor: user pixels in and out, counterfactuals, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cwm.errors import InputError
from cwm.predictor import CWMPredictor, make_mask_from_patches


@pytest.fixture
def predictor(tiny_model):
    return CWMPredictor(tiny_model, device="cpu")


def _img(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("h,w", [(32, 48), (45, 77), (101, 33), (7, 9)])
def test_output_has_input_size(predictor, h, w):
    out = predictor.predict(_img(h, w), _img(h, w, 1), visible=0.2)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8


def test_batched_and_torch_inputs(predictor):
    f = torch.rand(3, 3, 40, 50)
    out = predictor.predict(f, f.flip(-1), visible=0.1)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 3, 40, 50)
    batch = np.stack([_img(20, 30, i) for i in range(2)])
    assert predictor.predict(batch, batch).shape == (2, 20, 30, 3)


def test_same_seed_same_prediction(predictor):
    a, b = _img(32, 48), _img(32, 48, 1)
    assert np.array_equal(predictor.predict(a, b, seed=3), predictor.predict(a, b, seed=3))


def test_counterfactual_without_moves_equals_factual(predictor):
    f0 = _img(64, 96)  # 2x the model's 32x48, so a point maps to a known patch
    static = [(5, 5), (90, 60), (40, 30)]
    cf = predictor.counterfactual(f0, moves=[], static=static)
    patches = sorted({predictor._patch_index(p, (64, 96)) for p in static})
    assert patches == [0, 1 * 6 + 2, 3 * 6 + 5]  # input is 2x the model's 32x48 grid of 8 px patches
    mask = make_mask_from_patches(1, patches, 2, predictor.grid)
    factual = predictor.predict(f0, f0, mask=mask)
    assert np.array_equal(cf, factual)


def test_counterfactual_move_reveals_shifted_content(predictor):
    f0 = torch.rand(1, 3, 32, 48)
    frame1, visible = predictor.counterfactual_inputs(f0, [((12, 12), (8, 0))], [], (32, 48))
    assert visible == [1 * 6 + 2]  # target (20, 12) lies in patch row 1, col 2
    assert torch.allclose(frame1[..., 8:16, 16:24], f0[..., 8:16, 8:16], atol=1e-6)


def test_mask_argument_shapes(predictor):
    f = _img(32, 48)
    last = torch.ones(24, dtype=torch.bool)
    last[[0, 7]] = False
    a = predictor.predict(f, f, mask=last)
    b = predictor.predict(f, f, mask=make_mask_from_patches(1, [0, 7], 2, predictor.grid)[0])
    assert np.array_equal(a, b)
    with pytest.raises(InputError, match="mask must be"):
        predictor.predict(f, f, mask=torch.ones(5, dtype=torch.bool))


def test_bad_inputs(predictor):
    with pytest.raises(InputError, match="frame sizes differ"):
        predictor.predict(_img(32, 48), _img(32, 40))
    with pytest.raises(InputError, match="NaN"):
        predictor.predict(torch.full((3, 8, 8), float("nan")), torch.rand(3, 8, 8))
    with pytest.raises(InputError, match="uint8"):
        predictor.predict(np.zeros((8, 8, 3), np.float64), np.zeros((8, 8, 3), np.float64))
    with pytest.raises(InputError, match="outside"):
        predictor.counterfactual(_img(32, 48), moves=[((40, 10), (20, 0))])
    with pytest.raises(InputError, match="move 0"):
        predictor.counterfactual(_img(32, 48), moves=[(1, 2, 3)])


def test_grayscale_and_rgba_are_converted(predictor):
    """Documented policy: grayscale is replicated to RGB, RGBA drops alpha."""
    g = _img(32, 48)[..., 0]
    rgb = np.repeat(g[..., None], 3, -1)
    assert np.array_equal(predictor.predict(g, g), predictor.predict(rgb, rgb))
    rgba = np.concatenate([rgb, np.full((32, 48, 1), 7, np.uint8)], -1)
    assert np.array_equal(predictor.predict(rgba, rgba), predictor.predict(rgb, rgb))
