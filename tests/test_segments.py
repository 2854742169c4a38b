"""Spelke segments: exact answers with a rigid-objects oracle, the API contract, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt, gaussian_filter

from cwm.errors import ConfigError, InputError
from cwm.metrics import instance_masks, mask_iou, segment_metrics
from probes.oracles_segments import RigidObjectsOracle
from probes.packing import pack_grid
from probes.segments import SegmentConfig, otsu_threshold, segment, shift_image

SIZE = 64


def _scene(size: int = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured image and its instances: a disc, a rectangle and a two-part object (id 3),
    laid out on a 64-pixel canvas scaled to ``size``."""
    rng = np.random.default_rng(seed)
    s = size / SIZE
    img = gaussian_filter(rng.random((size, size, 3)), (s, s, 0))
    img = (img - img.min()) / (img.max() - img.min())
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / s - 0.5
    inst = np.zeros((size, size), np.int64)
    inst[(x - 17) ** 2 + (y - 16) ** 2 < 12 ** 2] = 1
    inst[(x >= 36) & (x < 60) & (y >= 6) & (y < 28)] = 2
    inst[((x - 14) ** 2 + (y - 47) ** 2 < 10 ** 2) | ((x - 38) ** 2 + (y - 50) ** 2 < 8 ** 2)] = 3
    return (img * 255 + 0.5).astype(np.uint8), inst


def _interior_points(inst: np.ndarray) -> list[tuple[int, int]]:
    """The most interior pixel ``(x, y)`` of each object."""
    points = []
    for k in range(1, inst.max() + 1):
        y, x = np.unravel_index(np.argmax(distance_transform_edt(inst == k)), inst.shape)
        points.append((int(x), int(y)))
    return points


@pytest.fixture(scope="module")
def scene():
    img, inst = _scene()
    return img, inst, RigidObjectsOracle(inst, patch_size=4, max_disp=8)


def test_oracle_moves_exactly_the_poked_object():
    img, inst = _scene()
    oracle = RigidObjectsOracle(inst, patch_size=4, max_disp=8)
    f0 = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    frame1 = f0.clone()
    frame1[..., 44:48, 36:40] = shift_image(f0, torch.tensor([[3.0, -2.0]]))[..., 44:48, 36:40]  # poke part B of id 3
    last = torch.ones(1, 256, dtype=torch.bool)
    last[0, [11 * 16 + 9, 0, 255]] = False  # the poked patch and two static background anchors
    mask = torch.cat([torch.zeros(1, 256, dtype=torch.bool), last], 1)
    pred = oracle.predict_fn(torch.stack([f0, frame1], 2), mask)
    changed = (pred - f0).abs().amax(1)[0].numpy() > 1e-4
    moved = shift_image(torch.from_numpy(inst == 3).float()[None, None], torch.tensor([[3.0, -2.0]]))[0, 0] > 0.5
    assert changed[inst == 3].mean() > 0.5 and not changed[(inst != 3) & ~moved.numpy()].any()


def test_jacobian_segments_recover_each_object(scene):
    img, inst, oracle = scene
    res = segment(oracle, img, points=_interior_points(inst), method="jacobian")
    ious = [mask_iou(m, inst == k) for k, m in enumerate(res.masks, start=1)]
    assert min(ious) > 0.9, ious  # id 3 is two disconnected parts that move as one
    assert res.cost == {"forwards": 0, "jvps": 2 * 3, "vjps": 0}  # one JVP, two tangents, per point


@pytest.mark.parametrize("read", ["counterfactual", "reprobe"])
def test_poke_segments_recover_each_object(scene, read):
    img, inst, oracle = scene
    res = segment(oracle, img, points=_interior_points(inst), method="poke", directions=4, magnitudes=(0.5,),
                  flow={"stride": 2}, read=read)
    ious = [mask_iou(m, inst == k) for k, m in enumerate(res.masks, start=1)]
    assert min(ious) > 0.9, ious
    assert np.all(res.scores > 0.7)
    # 3 points x 4 pokes, all batched; a 2-pixel poke is read with max_flow 3, whose sources
    # (every 2 pixels) share a tangent 4 cells apart: 16 tangents per flow read.
    tangents = pack_grid((32, 32), 2, 3).num_packs
    if read == "counterfactual":  # one read under each poke's own mask, no separate forward
        assert tangents == 16 and res.cost == {"forwards": 0, "jvps": 12 * 16, "vjps": 0}
    else:  # one forward per poke, then the flow probe's two random masks
        assert res.cost == {"forwards": 12, "jvps": 12 * 2 * 16, "vjps": 0}


def test_poke_lengths_are_read_with_their_own_flow_window(scene):
    img, inst, oracle = scene
    res = segment(oracle, img, points=_interior_points(inst)[:1], method="poke", directions=4, magnitudes=(0.5, 1.0))
    # At the default stride (4, one source per patch): 2-pixel pokes (max_flow 3) take 2x2
    # tangents, 4-pixel pokes (max_flow 6) 4x4; one shared window would cost 8 x 16.
    assert res.cost["jvps"] == 4 * pack_grid((16, 16), 4, 3).num_packs + 4 * pack_grid((16, 16), 4, 6).num_packs == 80
    assert mask_iou(res.masks[0], inst == 1) > 0.85


def test_masks_come_back_at_the_input_resolution():
    img, inst = _scene(96)
    small = _scene(SIZE)[1]
    oracle = RigidObjectsOracle(small, patch_size=4, max_disp=8)  # model size 64, input 96
    res = segment(oracle, img, points=_interior_points(inst), method="jacobian")
    assert res.masks.shape == (3, 96, 96) and res.masks.dtype == bool
    assert res.affinity.shape == (3, 96, 96) and res.points.shape == (3, 2)
    assert min(mask_iou(m, inst == k) for k, m in enumerate(res.masks, start=1)) > 0.8


def test_automatic_mode_finds_every_object(scene):
    img, inst, oracle = scene
    res = segment(oracle, img, method="jacobian")
    scores = segment_metrics(res.masks, instance_masks(inst))
    assert len(res.masks) == 3 and scores["miou"] > 0.9, scores


def test_result_visualize_and_save(scene, tmp_path):
    img, _, oracle = scene
    res = segment(oracle, img, points=[(17, 16)], method="jacobian")
    assert res.visualize().shape == img.shape and res.numpy() is res.masks
    res.save(tmp_path / "seg.png")
    res.save(tmp_path / "seg.npz")
    with np.load(tmp_path / "seg.npz") as saved:
        assert np.array_equal(saved["masks"], res.masks)
    with pytest.raises(InputError, match="exists"):
        res.save(tmp_path / "seg.png")


def test_bad_input(scene):
    img, _, oracle = scene
    with pytest.raises(InputError, match="outside"):
        segment(oracle, img, points=[(64, 10)])
    with pytest.raises(InputError, match="empty"):
        segment(oracle, img, points=[])
    with pytest.raises(InputError, match="1x1"):
        segment(oracle, np.zeros((1, 1, 3), np.uint8), points=[(0, 0)])
    with pytest.raises(InputError, match="batch"):
        segment(oracle, np.stack([img, img]), points=[(5, 5)])
    with pytest.raises(ConfigError, match="did you mean 'directions'"):
        segment(oracle, img, points=[(5, 5)], direction=3)
    with pytest.raises(ConfigError, match="threshold"):
        SegmentConfig(threshold=1.5)
    with pytest.raises(ConfigError, match="read='reprobe'"):
        SegmentConfig(flow={"num_masks": 1})


def test_fixed_threshold_and_otsu():
    values = np.r_[np.full(100, 0.1), np.full(50, 0.9)]
    assert 0.1 < otsu_threshold(values) <= 0.9
    assert otsu_threshold(np.full(10, 0.3)) == 0.5
    img, inst = _scene()
    oracle = RigidObjectsOracle(inst, patch_size=4, max_disp=8)
    res = segment(oracle, img, points=[(17, 16)], method="jacobian", threshold=0.5)
    assert res.thresholds.tolist() == [0.5] and mask_iou(res.masks[0], inst == 1) > 0.85


def test_real_model_through_the_predictor(tiny_model):
    from cwm.predictor import CWMPredictor

    predictor = CWMPredictor(tiny_model, device="cpu")
    img = _scene(40)[0]
    res = predictor.segment(img, points=[(10, 12), (30, 30)], method="jacobian")
    assert res.masks.shape == (2, 40, 40) and np.isfinite(res.affinity).all()
    res = predictor.segment(img, points=[(10, 12)], directions=2, magnitudes=(1.0,), read="reprobe",
                            flow={"num_masks": 1, "max_flow": 10})
    assert res.masks.shape == (1, 40, 40) and res.cost["forwards"] == 2 and res.cost["jvps"] > 0
    res = predictor.segment(img, points=[(10, 12)], directions=2, magnitudes=(1.0,))
    assert res.masks.shape == (1, 40, 40) and res.cost["forwards"] == 0 and res.cost["jvps"] > 0
    assert np.isfinite(res.affinity).all()


def test_embedded_model_jacobian_segments_end_to_end():
    """The embedded tiny model (64 px, patch 8), Jacobian variant: point prompts, a torch input
    that requires grad (the probe must not touch the caller's graph) and automatic mode."""
    import cwm

    predictor = cwm.load("default", device="cpu")
    img = _scene(48)[0]
    res = predictor.segment(img, points=[(12, 12), (36, 30)], method="jacobian")
    assert res.masks.shape == (2, 48, 48) and res.masks.dtype == bool and np.isfinite(res.affinity).all()
    assert res.cost == {"forwards": 0, "jvps": 4, "vjps": 0}
    assert all(m[y, x] for m, (x, y) in zip(res.masks, [(12, 12), (36, 30)]))  # the poked patch moved
    tensor = torch.from_numpy(img).permute(2, 0, 1).float().div(255).requires_grad_(True)
    again = predictor.segment(tensor, points=[(12, 12), (36, 30)], method="jacobian")
    assert np.allclose(again.affinity, res.affinity, atol=1e-4) and tensor.grad is None
    auto = predictor.segment(img, method="jacobian", candidate_stride=2, max_segments=2)
    assert auto.masks.shape[1:] == (48, 48) and len(auto.masks) <= 2
    assert auto.cost["jvps"] >= 2 * 16  # the scan: 4 x 4 candidates, two tangents each
