"""The multi-scale readout (probes.pyramid): level and tile layout, warps, composition across
levels, verification (identical frames give no motion), and the flow path that uses it."""
import numpy as np
import pytest
import torch

import cwm
from cwm.synthetic import make_scene
from probes import fields, pyramid
from probes.core import ProbeOptions
from probes.oracles import texture


def test_level_sizes_keep_the_aspect_ratio_and_double():
    assert pyramid.level_sizes((576, 768), (64, 64), 256) == [(64, 85), (128, 171), (256, 341)]
    assert pyramid.level_sizes((576, 768), (64, 64), None) == [(64, 85), (128, 171), (256, 341), (512, 683),
                                                                (576, 768)]
    assert pyramid.level_sizes((64, 64), (64, 64), 256) == [(64, 64)]
    assert pyramid.level_sizes((128, 128), (64, 64), 256) == [(64, 64), (128, 128)]
    assert pyramid.level_sizes((40, 30), (64, 64), 256) == [(64, 64)]     # smaller than the model: one window


def test_tiles_cover_the_level_flush_with_its_end():
    assert pyramid.tile_origins(64, 64, 48) == [0]
    assert pyramid.tile_origins(85, 64, 48) == [0, 21]
    assert pyramid.tile_origins(341, 64, 48) == [0, 46, 92, 138, 185, 231, 277]
    assert pyramid.tile_origins(341, 64, 64) == [0, 55, 111, 166, 222, 277]   # the default: about abutting
    weights = pyramid.tent((64, 64))
    assert weights.min() > 0 and weights[31, 31] == weights.max()


def test_warp_and_rescale_are_exact():
    image = torch.from_numpy(texture((40, 50), seed=1)).permute(2, 0, 1)[None].double() / 255
    flow = torch.zeros(1, 40, 50, 2, dtype=torch.float64)
    flow[..., 0], flow[..., 1] = 3.0, -2.0
    warped = pyramid.warp(image, flow)
    assert torch.allclose(warped[..., 2:, :47], image[..., :38, 3:], atol=1e-12)
    big = fields.resize_flow(flow, (80, 25))
    assert torch.allclose(big[..., 0], torch.full((1, 80, 25), 1.5, dtype=torch.float64))
    assert torch.allclose(big[..., 1], torch.full((1, 80, 25), -4.0, dtype=torch.float64))


class _LucasKanade:
    """A stand-in predictor for the pyramid: probe attributes only (tiles are 64 x 64)."""

    size, patch_size, grid, num_frames, device = (64, 64), 8, (8, 8), 2, torch.device("cpu")


def _lk_window_flow(predictor, f0, f1, opts, masks=None):
    """Per tile, one global translation by iterated Lucas-Kanade: exact for a translated smooth
    texture within about a pixel, clipped to ``opts.max_flow``; unable to see large motion alone."""
    max_flow = opts.max_flow
    g0, g1 = f0.mean(1).double(), f1.mean(1).double()
    d = torch.zeros(g0.shape[0], 2, dtype=torch.float64)
    for _ in range(20):
        field = d[:, None, None, :].expand(-1, *g0.shape[1:], 2)
        w1 = pyramid.warp(g1[:, None], field)[:, 0]
        gy, gx = torch.gradient(w1, dim=(1, 2))
        err = w1 - g0
        a = torch.stack([torch.stack([(gx * gx).sum((1, 2)), (gx * gy).sum((1, 2))], -1),
                         torch.stack([(gx * gy).sum((1, 2)), (gy * gy).sum((1, 2))], -1)], -2)
        b = -torch.stack([(gx * err).sum((1, 2)), (gy * err).sum((1, 2))], -1)
        d = (d + torch.linalg.solve(a, b[..., None])[..., 0]).clamp(-max_flow, max_flow)
    n, _, h, w = f0.shape
    flow = d[:, None, None, :].expand(n, h, w, 2).to(f0.dtype)
    return flow, torch.ones(n, h, w, dtype=f0.dtype), torch.zeros(n, h, w, dtype=torch.bool)


@pytest.mark.parametrize("shift", [(9.0, -6.0), (-13.0, 4.5)])
def test_levels_compose_a_motion_no_single_level_can_see(shift):
    """Each tile sees at most max_flow (3.84 px): only the composition across levels (warp by the
    flow so far, add the residual, rescale) recovers 9-13 px at 192 x 256."""
    from scipy import ndimage

    big = texture((260, 330), seed=3).astype(np.float64)
    big = ndimage.gaussian_filter(big, (2.0, 2.0, 0))
    f0 = big[30:222, 30:286]
    f1 = ndimage.shift(big, (shift[1], shift[0], 0), order=3)[30:222, 30:286]   # content moves by shift
    t0 = torch.from_numpy(f0).permute(2, 0, 1)[None] / 255
    t1 = torch.from_numpy(f1).permute(2, 0, 1)[None] / 255
    opts = ProbeOptions(finest_side=None)
    flow, conf, occ = pyramid.pyramid_flow(_LucasKanade(), _lk_window_flow, t0, t1, opts)
    inner = flow[0, 24:-24, 24:-24]
    assert torch.allclose(inner[..., 0].median(), torch.tensor(shift[0], dtype=inner.dtype), atol=0.05)
    assert torch.allclose(inner[..., 1].median(), torch.tensor(shift[1], dtype=inner.dtype), atol=0.05)
    single = _lk_window_flow(_LucasKanade(), t0[..., :64, :64], t1[..., :64, :64],
                             ProbeOptions(stride=8, max_flow=3.84).resolve(_LucasKanade(), (64, 64)))[0]
    assert single[0, 0, 0].abs().max() <= 3.84 + 1e-9        # one level alone cannot express it


@pytest.fixture(scope="module")
def predictor():
    return cwm.load("default", device="cpu")


@pytest.mark.parametrize("size", [(64, 64), (128, 128), (150, 220)])
def test_identical_frames_give_no_motion(predictor, size):
    frame = make_scene(1003, size).frames[0]
    result = predictor.flow(frame, frame)
    assert np.abs(result.flow).max() == 0.0
    assert result.flow.shape == (*size, 2) and result.confidence.shape == size


def test_verify_off_gives_the_raw_reading_and_bad_options_fail(predictor):
    scene = make_scene(1003, (64, 64))
    raw = predictor.flow(scene.frames[0], scene.frames[0], verify=False)
    assert np.abs(raw.flow).max() > 0            # the model's raw reading of a still pair is not zero
    with pytest.raises(cwm.ConfigError, match="finest_side"):
        predictor.flow(scene.frames[0], scene.frames[1], finest_side=4)
    with pytest.raises(cwm.ConfigError, match="tile_stride"):
        predictor.flow(scene.frames[0], scene.frames[1], tile_stride=0)


def test_large_input_keeps_aspect_and_beats_zero_flow_on_a_camera_pan(predictor):
    """A 176 x 320 photo-texture pair under a known 6-px pan: the pyramid follows it."""
    big = texture((200, 360), seed=5)
    f0, f1 = big[12:188, 20:340], big[12:188, 14:334]             # content moves by +6 px in x
    result = predictor.flow(f0, f1)
    err = np.hypot(result.flow[..., 0] - 6, result.flow[..., 1])[16:-16, 16:-16].mean()
    assert err < 0.5 * 6.0


def test_each_tile_probes_with_its_own_masks_and_pairs_share_them():
    from probes.jacobian import probe_masks

    predictor = _LucasKanade()
    opts = ProbeOptions().resolve(predictor, (64, 64))
    k, tokens = opts.num_masks, predictor.num_frames * 64
    masks = pyramid.tile_masks(predictor, opts, 3, 2)                  # 3 tiles x 2 pairs, tile-major
    assert masks.shape == (3 * 2 * k, tokens) and masks.dtype == torch.bool
    assert torch.equal(masks[:2 * k], probe_masks(2, 2, (8, 8), k, opts.visible, opts.seed))  # tile 0 = one window
    tiles = masks.reshape(3, 2, k, tokens)
    assert all(torch.equal(t[0], t[1]) for t in tiles)                 # a pair's masks do not depend on the batch
    assert not torch.equal(tiles[0], tiles[1]) and not torch.equal(tiles[1], tiles[2])

    seen = []

    def window(predictor, f0, f1, opts, masks=None):
        seen.append(masks)
        return _lk_window_flow(predictor, f0, f1, opts)

    t0 = torch.rand(2, 3, 128, 128, dtype=torch.float64)
    pyramid.pyramid_flow(predictor, window, t0, t0, ProbeOptions(finest_side=None))
    assert [m.shape[0] for m in seen] == [2 * k, 4 * 2 * k]            # level 0: one tile; level 1: four
    assert torch.equal(seen[1], pyramid.tile_masks(predictor, opts, 4, 2))
