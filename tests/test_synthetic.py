"""Ground truth of the synthetic scenes is exact: warps, occlusion, instances, parallax, stereo."""

import numpy as np
import pytest
from scipy import ndimage

from cwm.errors import ConfigError
from cwm.synthetic import (PRESETS, Layer, Polygon, SceneConfig, SceneSpec, Union, make_scene,
                           render)

LEVEL = 1.0 / 255.0


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Reference bilinear sampling (float64), positions inside [0, W-1] x [0, H-1]."""
    h, w = image.shape[:2]
    x0 = np.clip(np.floor(x).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, h - 2)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def edge_band(instances: np.ndarray, width: int = 2) -> np.ndarray:
    """Pixels within ``width`` px of an instance boundary (where colours are anti-aliased)."""
    edge = np.zeros(instances.shape, bool)
    edge[:, 1:] |= instances[:, 1:] != instances[:, :-1]
    edge[:, :-1] |= instances[:, 1:] != instances[:, :-1]
    edge[1:] |= instances[1:] != instances[:-1]
    edge[:-1] |= instances[1:] != instances[:-1]
    return ndimage.binary_dilation(edge, iterations=width - 1) if width > 1 else edge


def forward_positions(scene, t=0):
    h, w = scene.size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return xs + scene.flow[t, ..., 0], ys + scene.flow[t, ..., 1]


def warp_error(scene, t=0) -> tuple[float, float]:
    """Mean |frame_t - bilinear(frame_t+1, x + flow)| over checked pixels (in [0, 1] units)."""
    h, w = scene.size
    px, py = forward_positions(scene, t)
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    near_edge_next = edge_band(scene.instances[t + 1])[np.clip(np.rint(py).astype(int), 0, h - 1),
                                                       np.clip(np.rint(px).astype(int), 0, w - 1)]
    check = ~scene.occlusion[t] & inside & ~edge_band(scene.instances[t]) & ~near_edge_next
    frame0 = scene.frames[t].astype(np.float64) / 255
    warped = bilinear(scene.frames[t + 1].astype(np.float64) / 255, px, py)
    return float(np.abs(warped - frame0)[check].mean()), float(check.mean())


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("size", [(64, 64), (48, 80)])
def test_warping_by_gt_flow_reproduces_next_frame(preset, size):
    for seed in range(4):
        scene = make_scene(seed, size, preset=preset)       # textured, noise 0 by default
        assert scene.config.noise == 0
        error, coverage = warp_error(scene)
        assert coverage > 0.4
        assert error < LEVEL, (preset, seed, error * 255)


def test_warp_exact_on_every_pair_of_a_long_clip():
    scene = make_scene(5, (64, 64), num_frames=4, preset="roll_zoom")
    for t in range(3):
        assert warp_error(scene, t)[0] < LEVEL


def test_shapes_dtypes_and_determinism():
    a = make_scene(7, (40, 56), num_frames=3)
    b = make_scene(7, (40, 56), num_frames=3)
    assert a.frames.shape == (3, 40, 56, 3) and a.frames.dtype == np.uint8
    assert a.flow.shape == (2, 40, 56, 2) and a.flow.dtype == np.float32
    assert a.occlusion.shape == a.out_of_frame.shape == (2, 40, 56) and a.occlusion.dtype == bool
    assert a.instances.shape == (3, 40, 56) and a.instances.dtype == np.int32
    assert a.depth.shape == (3, 40, 56) and a.depth.dtype == np.float32 and (a.depth > 0).all()
    for name in ("frames", "flow", "occlusion", "instances", "depth"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert not np.array_equal(a.frames, make_scene(8, (40, 56), num_frames=3).frames)
    frame0, frame1 = a.pair(1)
    assert np.array_equal(frame1, a.frames[2])


def test_noise_changes_frames_not_ground_truth():
    clean = make_scene(3, (64, 64))
    noisy = make_scene(3, (64, 64), noise=0.02)
    assert np.array_equal(clean.flow, noisy.flow)
    assert np.array_equal(clean.instances, noisy.instances)
    diff = noisy.frames.astype(float) - clean.frames
    assert 3.0 < diff.std() < 7.0                     # about 0.02 * 255


def test_texture_is_rich():
    scene = make_scene(2, (64, 64), num_objects=(0, 0))
    frame = scene.frames[0].astype(float)
    assert frame.std(axis=(0, 1)).min() > 8           # not flat colour
    gradient = np.abs(np.diff(frame, axis=1)).mean()
    assert gradient > 1.0                             # fine detail, not only a smooth ramp


def square_spec(shift=(4.0, 0.0), size=(32, 32), bg_shift=(0.0, 0.0)) -> SceneSpec:
    """Static textured background and a 10x10 square at (8..17, 10..19) moving by ``shift``."""
    rng = np.random.default_rng(0)
    eye = np.eye(3)
    bg_motion = np.stack([eye, eye.copy()])
    bg_motion[1, :2, 2] = bg_shift
    background = Layer(0, rng.random((40, 40, 3), np.float32), (-4.0, -4.0), bg_motion,
                       (0.0, 0.0, 0.1))
    half = 5.0
    square = Polygon(np.array([[-half, -half], [half, -half], [half, half], [-half, half]]))
    motion = np.stack([eye.copy(), eye.copy()])
    motion[0, :2, 2] = (12.5, 14.5)                   # centre: covers x 8..17, y 10..19
    motion[1, :2, 2] = (12.5 + shift[0], 14.5 + shift[1])
    obj = Layer(1, np.full((13, 13, 3), 0.5, np.float32), (-6.0, -6.0), motion, (0.0, 0.0, 0.5),
                square)
    return SceneSpec(size, (background, obj))


def test_hand_made_scene_instances_occlusion_and_flow():
    scene = render(square_spec(shift=(4.0, 0.0)))
    expected0 = np.zeros((32, 32), bool)
    expected0[10:20, 8:18] = True
    assert np.array_equal(scene.instances[0] == 1, expected0)
    expected1 = np.zeros((32, 32), bool)
    expected1[10:20, 12:22] = True
    assert np.array_equal(scene.instances[1] == 1, expected1)
    assert np.allclose(scene.flow[0][expected0], (4.0, 0.0))
    assert np.allclose(scene.flow[0][~expected0], 0.0)
    # Background pixels that the square moves onto (x 18..21) are occluded; nothing else is.
    occluded = np.zeros((32, 32), bool)
    occluded[10:20, 18:22] = True
    assert np.array_equal(scene.occlusion[0], occluded)
    assert not scene.out_of_frame.any()
    assert np.allclose(scene.depth[0][expected0], 2.0)
    assert np.allclose(scene.depth[0][~expected0], 10.0)


def test_out_of_frame_counts_as_occluded():
    scene = render(square_spec(shift=(0.0, 0.0), bg_shift=(-2.6, 0.0)))
    # Background moves 2.6 px left: columns 0..2 land left of -0.5 (x - 2.6 < -0.5).
    out = np.zeros((32, 32), bool)
    out[:, :3] = True
    out[10:20, 8:18] = False                          # the square does not move
    assert np.array_equal(scene.out_of_frame[0], out)
    # Background columns 18..20 land on x 15.4..17.4, under the static square (x < 17.5).
    covered = np.zeros((32, 32), bool)
    covered[10:20, 18:21] = True
    assert np.array_equal(scene.occlusion[0], out | covered)


@pytest.mark.parametrize("preset", ["default", "objects", "parts"])
def test_occlusion_is_forward_position_covered_by_nearer_layer(preset):
    """Away from edges, occluded <=> the surface seen at x + flow in frame t+1 is nearer."""
    checked = 0
    for seed in range(6):
        scene = make_scene(seed, (64, 64), preset=preset, camera_zoom=0.0)
        h, w = scene.size
        px, py = forward_positions(scene)
        qx, qy = np.rint(px).astype(int), np.rint(py).astype(int)
        inside = (qx >= 0) & (qx < w) & (qy >= 0) & (qy < h)
        qx, qy = np.clip(qx, 0, w - 1), np.clip(qy, 0, h - 1)
        clear = inside & ~edge_band(scene.instances[1])[qy, qx]
        # A layer's own points stay on it, so a different id at x + flow means another layer
        # covers the point, and that layer must be nearer.
        other = scene.instances[1][qy, qx] != scene.instances[0]
        assert np.array_equal(scene.occlusion[0][clear], other[clear]), (preset, seed)
        covered = clear & other
        assert (scene.depth[1][qy, qx][covered] < scene.depth[0][covered]).all()
        assert np.array_equal(scene.out_of_frame[0], ~_inside_area(px, py, h, w))
        assert (scene.occlusion[0] >= scene.out_of_frame[0]).all()
        checked += clear.sum()
    assert checked > 6 * 64 * 64 * 0.7


def _inside_area(px, py, h, w):
    return (px >= -0.5) & (px < w - 0.5) & (py >= -0.5) & (py < h - 0.5)


@pytest.mark.parametrize("preset", ["default", "parts", "roll_zoom"])
def test_instances_match_the_objects_drawn(preset):
    for seed in range(4):
        scene = make_scene(seed, (64, 64), num_frames=3, preset=preset)
        h, w = scene.size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        for t in range(scene.num_frames):
            expected = np.zeros((h, w), np.int32)
            for layer in scene.spec.layers[1:]:       # back to front
                inv = np.linalg.inv(layer.motion[t])
                u = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
                v = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
                expected[layer.shape.sdf(u, v) <= 0] = layer.instance_id
            assert np.array_equal(scene.instances[t], expected)
        assert set(np.unique(scene.instances)) <= set(range(scene.num_objects + 1))


def test_part_object_is_one_id_several_pieces_one_motion():
    found = 0
    for seed in range(10):
        scene = make_scene(seed, (96, 96), preset="parts")
        part = [layer for layer in scene.spec.layers if isinstance(layer.shape, Union)]
        assert len(part) == 1 and len(part[0].shape.pieces) >= 2
        mask = scene.instances[0] == part[0].instance_id
        if ndimage.label(mask)[1] < 2:
            continue                                  # a piece may be hidden or out of view
        found += 1
        ys, xs = np.nonzero(mask)
        design = np.stack([xs, ys, np.ones_like(xs)], 1).astype(np.float64)
        coef, *_ = np.linalg.lstsq(design, scene.flow[0][mask].astype(np.float64), rcond=None)
        assert np.abs(design @ coef - scene.flow[0][mask]).max() < 1e-3    # one affine motion
    assert found >= 5


def test_camera_translation_gives_parallax_proportional_to_inverse_depth():
    for seed in range(5):
        scene = make_scene(seed, (64, 64), preset="camera")
        ratio = scene.flow[0] * scene.depth[0][..., None]   # flow / inverse depth
        assert np.allclose(ratio, ratio[0, 0], rtol=1e-4, atol=1e-4)
        assert np.abs(scene.flow[0]).max() > 0.3


def test_stereo_disparity_is_proportional_to_inverse_depth():
    for seed in range(5):
        scene = make_scene(seed, (64, 96), preset="stereo")
        assert scene.stereo
        assert np.all(scene.flow[0][..., 1] == 0)
        disparity = -scene.flow[0][..., 0]
        assert (disparity > 0).all()
        product = disparity * scene.depth[0]          # = focal * baseline, one constant
        assert np.allclose(product, product.mean(), rtol=1e-4)
        assert np.ptp(scene.depth[0][scene.instances[0] == 0]) > 0   # slanted background


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="did you mean 'stereo'"):
        make_scene(0, preset="sterio")
    with pytest.raises(ConfigError, match="did you mean 'noise'"):
        make_scene(0, nosie=0.1)
    with pytest.raises(ConfigError, match="num_frames"):
        make_scene(0, num_frames=1)
    with pytest.raises(ConfigError, match="size"):
        make_scene(0, size=(4, 64))
    with pytest.raises(ConfigError, match="object_depth"):
        SceneConfig(object_depth=(2.0, 9.0))
    with pytest.raises(ConfigError, match="not both"):
        make_scene(0, config=SceneConfig(), preset="stereo")
