"""cwm.viz: the Middlebury colour wheel against Baker's reference, and every helper's contract."""
from __future__ import annotations

import math

import numpy as np
import pytest

from cwm.errors import InputError
from cwm.viz import (color_wheel, depth_to_color, distinct_colors, draw_arrows, flow_legend,
                     flow_to_color, occlusion_overlay, overlay_mask, overlay_segments,
                     points_overlay, side_by_side)


def _reference_wheel() -> np.ndarray:
    """makeColorwheel() from Baker et al.'s colorcode.cpp, written out loop by loop."""
    segments = [(15, lambda k: (255, math.floor(255 * k / 15), 0)),
                (6, lambda k: (255 - math.floor(255 * k / 6), 255, 0)),
                (4, lambda k: (0, 255, math.floor(255 * k / 4))),
                (11, lambda k: (0, 255 - math.floor(255 * k / 11), 255)),
                (13, lambda k: (math.floor(255 * k / 13), 0, 255)),
                (6, lambda k: (255, 0, 255 - math.floor(255 * k / 6)))]
    return np.array([rgb(k) for n, rgb in segments for k in range(n)], dtype=np.float64)


def _reference_color(fx: float, fy: float) -> tuple[int, int, int]:
    """computeColor() from colorcode.cpp for one (already normalised) flow vector."""
    wheel = _reference_wheel()
    n = len(wheel)
    rad = math.sqrt(fx * fx + fy * fy)
    a = math.atan2(-fy, -fx) / math.pi
    fk = (a + 1.0) / 2.0 * (n - 1)
    k0 = int(fk)
    k1 = (k0 + 1) % n
    f = fk - k0
    out = []
    for b in range(3):
        col0, col1 = wheel[k0][b] / 255.0, wheel[k1][b] / 255.0
        col = (1 - f) * col0 + f * col1
        col = 1 - rad * (1 - col) if rad <= 1 else col * 0.75
        out.append(int(255.0 * col))
    return tuple(out)


def test_wheel_matches_the_reference_construction():
    wheel = color_wheel()
    assert wheel.shape == (55, 3)
    np.testing.assert_array_equal(wheel, _reference_wheel())


def test_rightward_flow_is_the_first_wheel_colour_and_zero_is_white():
    flow = np.zeros((2, 3, 2), np.float32)
    flow[0, 0] = (1, 0)
    flow[0, 1] = (-0.0, 0)
    img = flow_to_color(flow, max_flow=1.0)
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    assert tuple(img[0, 0]) == tuple(color_wheel()[0].astype(int)) == (255, 0, 0)
    assert (img[1] == 255).all() and tuple(img[0, 1]) == (255, 255, 255)


def test_random_flow_matches_the_reference_pixel_by_pixel():
    rng = np.random.default_rng(0)
    flow = rng.normal(0, 4, (12, 15, 2)).astype(np.float32)
    max_flow = 6.0
    img = flow_to_color(flow, max_flow=max_flow)
    ref = np.array([[_reference_color(fx / max_flow, fy / max_flow) for fx, fy in row]
                    for row in flow.astype(np.float64)], dtype=np.int64)
    np.testing.assert_array_equal(img, ref)
    assert (np.hypot(flow[..., 0], flow[..., 1]) > max_flow).any()  # out-of-range path covered


def test_default_saturation_is_robust_to_outliers():
    flow = np.zeros((20, 20, 2), np.float32)
    flow[..., 0] = 2.0
    flow[0, 0] = (1000.0, 0)  # one wild vector must not wash the rest out to white
    img = flow_to_color(flow)
    assert img[10, 10, 1] < 30 and img[10, 10, 2] < 30  # saturated red
    assert (flow_to_color(np.zeros((4, 4, 2))) == 255).all()


def test_unknown_flow_is_black_and_bad_shapes_raise():
    flow = np.zeros((3, 3, 2))
    flow[1, 1] = (np.nan, 0)
    assert (flow_to_color(flow)[1, 1] == 0).all()
    with pytest.raises(InputError, match=r"\[H, W, 2\]"):
        flow_to_color(np.zeros((3, 3)))


def test_legend():
    legend = flow_legend(65)
    assert legend.shape == (65, 65, 3) and legend.dtype == np.uint8
    assert (legend[32, 32] == 255).all() and (legend[0, 0] == 255).all()  # centre, outside
    assert tuple(legend[32, 64]) == (255, 0, 0)  # rim, rightward


def test_drawing_helpers_return_new_uint8_images():
    img = np.full((40, 50, 3), 128, np.uint8)
    before = img.copy()
    flow = np.zeros((40, 50, 2), np.float32)
    flow[..., 0] = 5
    mask = np.zeros((40, 50), bool)
    mask[10:20, 10:30] = True
    outs = [draw_arrows(img, flow, step=10), overlay_mask(img, mask),
            overlay_segments(img, np.stack([mask, ~mask])), occlusion_overlay(img, mask),
            points_overlay(img, [(5, 5), (30.4, 20.6)]), points_overlay(img, [], colors=(1, 2, 3))]
    for out in outs:
        assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert np.array_equal(img, before)
    assert not np.array_equal(outs[0], img)
    assert (outs[1][~mask] == 128).all() and (outs[1][15, 20] != 128).any()
    assert tuple(outs[4][21, 30]) == tuple(distinct_colors(2)[1])
    assert (overlay_segments(img, np.zeros((0, 40, 50), bool)) == img).all()
    with pytest.raises(InputError, match="mask is 49x40"):
        overlay_mask(img, mask[:, :49])


def test_depth_to_color():
    inv = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (8, 1))
    inv[0, 0] = np.inf
    out = depth_to_color(inv)
    assert out.shape == (8, 64, 3) and out.dtype == np.uint8
    assert (out[0, 0] == 0).all()
    far, near = out[4, 1].astype(int), out[4, 63].astype(int)
    assert near[0] > near[2] and far[2] > far[0]  # turbo: near is red, far is blue
    assert depth_to_color(inv, cmap="magma").shape == (8, 64, 3)
    with pytest.raises(InputError, match="unknown colormap"):
        depth_to_color(inv, cmap="rainbowz")


def test_side_by_side():
    a, b = np.zeros((10, 8, 3), np.uint8), np.zeros((6, 5), np.uint8)
    out = side_by_side([a, b], gap=2)
    assert out.shape == (10, 15, 3) and (out[8, 12] == 255).all()  # b is padded at the bottom
    assert side_by_side([a, b], labels=["flow", "depth"]).shape == (28, 17, 3)
    with pytest.raises(InputError):
        side_by_side([a], labels=["x", "y"])
    with pytest.raises(InputError, match="float32"):
        side_by_side([a.astype(np.float32)])


def test_side_by_side_labels_stay_over_their_own_panel():
    a = np.zeros((64, 64, 3), np.uint8)
    out = side_by_side([a, a, a], labels=["a caption far too long for a 64 px panel", "", "short"], gap=4)
    strip = out[:18]
    assert (strip[:, :64] < 128).any()              # the long caption was drawn (shrunk and cut)
    assert (strip[:, 64:64 + 4 + 64] == 255).all()  # ... and nothing spilled into the gap or the next panel
    assert (strip[:, 136:] < 128).any()


def test_draw_patches_outlines_exactly_the_given_patches():
    from cwm.viz import draw_patches

    out = draw_patches(np.zeros((32, 32, 3), np.uint8), [5], (4, 4), color=(255, 0, 0))
    drawn = np.argwhere(out[..., 0] == 255)  # patch 5 on a 4x4 grid: row 1, column 1 -> pixels 8..15
    assert drawn.min(0).tolist() == [8, 8] and drawn.max(0).tolist() == [15, 15]
    assert out[12, 12, 0] == 0  # an outline, not a fill
