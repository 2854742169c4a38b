"""The demos run in fast mode and write non-trivial figures (as Accelerate executes its examples).

They run with a tiny random model (the embedded one costs minutes here), so the figures are
checked for shape and content only; the claim the counterfactual demo illustrates (a poked object
moves more than the background) is checked with the embedded default model when it is installed.
"""
from __future__ import annotations

import importlib
import importlib.util

import numpy as np
import pytest

from cwm import hub
from cwm.io import open_video, read_image

HAVE_DEFAULT = hub.is_cached("default")
needs = {name: pytest.mark.skipif(importlib.util.find_spec(f"probes.{name}") is None,
                                  reason=f"probes/{name}.py is not there yet")
         for name in ("flow", "segments", "depth")}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    """A tiny random model."""
    import torch

    from cwm.checkpoints import save_pretrained
    from cwm.config import CWMConfig
    from cwm.model import build_model

    torch.manual_seed(0)
    cfg = CWMConfig(img_size=(32, 32), patch_size=8, enc_dim=32, enc_depth=1, enc_heads=2,
                    dec_dim=32, dec_depth=1, dec_heads=2)
    return str(save_pretrained(build_model(cfg), tmp_path_factory.mktemp("demo") / "tiny"))


def run_demo(name: str, weights: str, out, *extra: str) -> None:
    module = importlib.import_module(f"demos.{name}")
    assert module.main(["--fast", "--weights", weights, "--out", str(out), *extra]) == 0


def figure(path) -> np.ndarray:
    img = read_image(path)
    assert img.std() > 5, f"{path} is (nearly) constant"
    return img


def test_make_assets_is_deterministic_and_the_assets_are_there(tmp_path):
    from demos import make_assets

    for run in ("a", "b"):
        assert make_assets.main(["--out", str(tmp_path / run)]) == 0
    for name in ("sample.mp4", "still.png", "stereo_left.png", "stereo_right.png"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        assert (make_assets.ASSETS / name).is_file(), f"{name} missing: run python -m demos.make_assets"
    for name in ("still.png", "stereo_left.png", "stereo_right.png"):
        assert read_image(make_assets.ASSETS / name).shape == (*make_assets.SIZE, 3)
    with open_video(make_assets.ASSETS / "sample.mp4") as video:
        assert video.num_frames == make_assets.SAMPLE["num_frames"] and video.size == make_assets.SIZE
    assert (make_assets.ASSETS / "sample.mp4").stat().st_size < 300_000


def test_factual_prediction(weights, tmp_path, capsys):
    run_demo("factual_prediction", weights, tmp_path)
    img = figure(tmp_path / "factual_prediction.png")
    assert img.shape[0] >= 2 * 128 and img.shape[1] >= 5 * 128  # two rows: frames + 3 predictions
    lines = [line for line in capsys.readouterr().out.splitlines() if "revealed" in line]
    assert len(lines) == 3


def test_counterfactual_motion(weights, tmp_path):
    from demos.make_assets import still_scene

    run_demo("counterfactual_motion", weights, tmp_path)
    figure(tmp_path / "counterfactual_motion.png")
    predicted = read_image(tmp_path / "counterfactual.png")
    scene = still_scene()
    assert predicted.shape == scene.frames[0].shape
    change = np.abs(predicted.astype(float) - scene.frames[0].astype(float)).mean(axis=2)
    assert change.max() > 0


@pytest.mark.skipif(not HAVE_DEFAULT, reason="the embedded default model is not installed")
def test_the_poked_object_moves_more_than_the_background(tmp_path):
    from demos.make_assets import still_scene

    run_demo("counterfactual_motion", "default", tmp_path)
    scene = still_scene()
    change = np.abs(read_image(tmp_path / "counterfactual.png").astype(float) - scene.frames[0]).mean(axis=2)
    objects = scene.instances[0] > 0
    assert change[objects].mean() > 1.5 * change[~objects].mean()


def test_rgb_dots(weights, tmp_path, capsys):
    run_demo("rgb_dots", weights, tmp_path)
    img = figure(tmp_path / "rgb_dots.png")
    assert img.shape[1] >= 4 * 128
    out = capsys.readouterr().out
    assert all(f"{c} dot at" in out for c in ("red", "green", "blue")) and "occluded" in out


def test_demos_refuse_to_overwrite(weights, tmp_path):
    from cwm.errors import InputError

    run_demo("counterfactual_motion", weights, tmp_path)
    with pytest.raises(InputError, match="--overwrite"):
        run_demo("counterfactual_motion", weights, tmp_path)
    run_demo("counterfactual_motion", weights, tmp_path, "--overwrite")


@needs["flow"]
def test_dense_flow(weights, tmp_path):
    run_demo("dense_flow", weights, tmp_path)
    with open_video(tmp_path / "dense_flow.mp4") as video:
        assert video.num_frames >= 2
    figure(tmp_path / "dense_flow.png")


@needs["segments"]
def test_spelke_segment(weights, tmp_path):
    run_demo("spelke_segment", weights, tmp_path)
    figure(tmp_path / "spelke_segment.png")


@needs["depth"]
def test_stereo_depth(weights, tmp_path):
    run_demo("stereo_depth", weights, tmp_path)
    figure(tmp_path / "stereo_depth.png")
