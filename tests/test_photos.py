"""Real-photo scenes (cwm.synthetic.photos): ground truth exact, held-out material excluded, and
their use in pretraining (data.source=photos, train.init)."""
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from cwm.errors import ConfigError, InputError
from cwm.io import read_image
from cwm.synthetic.photos import PhotoBank, PhotoSceneConfig, make_photo_scene
from test_synthetic import edge_band, forward_positions, warp_error

ASSETS = "demos/assets"


def gradient_photo(h=200, w=300) -> np.ndarray:
    """An image whose colours are affine in (x, y): bilinear resampling reproduces it exactly."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([40 + 0.5 * xs, 30 + 0.6 * ys, 200 - 0.25 * xs - 0.2 * ys], -1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_bank() -> PhotoBank:
    names = ["still.png", "stereo_left.png", "stereo_right.png"]
    return PhotoBank([read_image(f"{ASSETS}/{n}") for n in names], names)


def test_warp_exact_on_affine_photos():
    """Textures that bilinear sampling reproduces exactly: the warp by the ground-truth flow
    matches frame 1 to the uint8 rounding, for camera and object motion alike."""
    bank = PhotoBank([gradient_photo()], ["gradient"])
    cfg = replace(PhotoSceneConfig(), noise=(0.0, 0.0), still_prob=0.0, static_camera_prob=0.0)
    worst = 0.0
    for seed in range(6):
        scene = make_photo_scene(bank, seed, (64, 64), config=cfg)
        error, coverage = warp_error(scene)
        assert coverage > 0.3
        worst = max(worst, error)
        moving = np.abs(scene.flow[0]).max()
        assert moving > 0.5  # the camera did move
    assert worst < 0.75 / 255


def test_warp_on_real_textures_beats_zero_flow(photo_bank):
    cfg = replace(PhotoSceneConfig(), noise=(0.0, 0.0), still_prob=0.0, static_camera_prob=0.0)
    for seed in range(4):
        scene = make_photo_scene(photo_bank, seed, (64, 64), config=cfg)
        error, _ = warp_error(scene)
        h, w = scene.size
        check = ~scene.occlusion[0] & ~edge_band(scene.instances[0])
        zero = np.abs(scene.frames[1].astype(float) - scene.frames[0].astype(float))[check].mean() / 255
        assert error < 0.25 * zero, (seed, error, zero)


def test_background_flow_is_the_camera_motion(photo_bank):
    scene = make_photo_scene(photo_bank, 11, (48, 80), num_frames=3,
                             config=replace(PhotoSceneConfig(), static_camera_prob=0.0, still_prob=0.0))
    bg = scene.spec.layers[0]
    step = bg.motion[1] @ np.linalg.inv(bg.motion[0])
    for t in range(2):
        px, py = forward_positions(scene, t)
        h, w = scene.size
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        ex = step[0, 0] * xs + step[0, 1] * ys + step[0, 2]
        ey = step[1, 0] * xs + step[1, 1] * ys + step[1, 2]
        on_bg = scene.instances[t] == 0
        assert on_bg.mean() > 0.3
        np.testing.assert_allclose(px[on_bg], ex[on_bg], atol=1e-4)
        np.testing.assert_allclose(py[on_bg], ey[on_bg], atol=1e-4)


def test_still_scenes_have_identical_frames_and_zero_flow(photo_bank):
    cfg = replace(PhotoSceneConfig(), still_prob=1.0, noise=(0.0, 0.0))
    for seed in range(3):
        scene = make_photo_scene(photo_bank, seed, (64, 64), config=cfg)
        assert np.array_equal(scene.frames[0], scene.frames[1])
        assert np.abs(scene.flow).max() < 1e-9 and not scene.occlusion.any()  # float64 A1 @ inv(A0)


def test_deterministic_shapes_and_objects(photo_bank):
    a = make_photo_scene(photo_bank, 5, (64, 96), num_frames=3)
    b = make_photo_scene(photo_bank, 5, (64, 96), num_frames=3)
    assert a.frames.shape == (3, 64, 96, 3) and a.frames.dtype == np.uint8
    assert a.flow.shape == (2, 64, 96, 2) and a.occlusion.shape == (2, 64, 96)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.flow, b.flow)
    assert not np.array_equal(a.frames, make_photo_scene(photo_bank, 6, (64, 96), num_frames=3).frames)
    counts = [len(make_photo_scene(photo_bank, s, (64, 64)).spec.layers) - 1 for s in range(40)]
    assert set(counts) == {0, 1, 2, 3}


def test_bank_excludes_held_out_files_and_small_images(tmp_path):
    big = gradient_photo(120, 160)
    for name in ("aloeL.jpg", "RubberWhale1.png", "keep.png", "sub/also.JPG"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(big).save(tmp_path / name)
    Image.fromarray(big[:50, :50]).save(tmp_path / "tiny.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    bank = PhotoBank.from_folders([tmp_path])
    assert sorted(n.rsplit("/", 1)[-1] for n in bank.names) == ["also.JPG", "keep.png"]
    with pytest.raises(InputError, match="does not exist"):
        PhotoBank.from_folders([tmp_path / "missing"])
    with pytest.raises(InputError, match="no usable images"):
        PhotoBank.from_folders([tmp_path], exclude=["*"])


def test_photo_source_in_pretraining(tmp_path):
    from cwm.synthetic.photos import HELD_OUT_PATTERNS  # noqa: F401 (the default exclusion)
    from pretrain.config import resolve
    from pretrain.data import PhotoClips, build_data

    Image.fromarray(read_image(f"{ASSETS}/still.png")).save(tmp_path / "p.png")
    cfg = resolve(overrides=["data.source=photos", f"data.photo_folders=[{tmp_path}]", "data.photo_fraction=0.5",
                             "train.output_dir=x", "data.crop_scale=[1,1]"])
    bundle = build_data(cfg, cfg.model_config(), unit=32)
    assert isinstance(bundle.dataset, PhotoClips) and "1 photos" in bundle.summary
    items = [bundle.dataset[(0, i)] for i in range(40)]
    again = bundle.dataset[(0, 7)]
    assert items[0]["video"].shape == (2, 64, 64, 3)
    assert np.array_equal(items[7]["video"].numpy(), again["video"].numpy())
    with pytest.raises(ConfigError, match="photo_folders"):
        resolve(overrides=["data.source=photos", "train.output_dir=x"])
    with pytest.raises(ConfigError, match="photo_fraction"):
        resolve(overrides=["data.photo_fraction=1.5", "train.output_dir=x"])


def test_init_weights_copies_and_checks_the_architecture():
    import torch

    import cwm
    from cwm.config import get_variant
    from cwm.model import build_model
    from pretrain.train import init_weights

    model = build_model(get_variant("tiny_64"))
    init_weights(model, "default")
    reference = cwm.load("default", device="cpu").model
    for (k, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), k
    other = build_model(replace(get_variant("tiny_64"), enc_depth=2))
    with pytest.raises(ConfigError, match="enc_depth"):
        init_weights(other, "default")
