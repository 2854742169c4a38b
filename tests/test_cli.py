"""The ``cwm`` command line, end to end on tiny inputs with a tiny random model.

Most runs call ``cwm.cli.main.main([...])`` in-process; a few run the installed ``cwm`` script to
check what a user sees (exit status, one stderr line, no traceback).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cwm.cli import common
from cwm.cli.main import COMMANDS, build_parser, main
from cwm.io import open_video, read_image, write_image, write_video

H, W, FRAMES = 40, 48, 6
needs = {name: pytest.mark.skipif(importlib.util.find_spec(f"probes.{name}") is None,
                                  reason=f"probes/{name}.py is not there yet")
         for name in ("flow", "segments", "depth")}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """A tiny random model, a 6-frame video, a frame pair, a still and a corrupt video."""
    import torch

    from cwm.checkpoints import save_pretrained
    from cwm.config import CWMConfig
    from cwm.model import build_model
    from cwm.synthetic import make_scene

    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    cfg = CWMConfig(img_size=(32, 32), patch_size=8, enc_dim=32, enc_depth=1, enc_heads=2,
                    dec_dim=32, dec_depth=1, dec_heads=2)
    save_pretrained(build_model(cfg), root / "tiny")
    scene = make_scene(5, (H, W), num_frames=FRAMES)
    write_video(root / "clip.mp4", scene.frames, fps=10)
    write_image(root / "f0.png", scene.frames[0])
    write_image(root / "f1.png", scene.frames[1])
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    return {"root": root, "weights": root / "tiny", "video": root / "clip.mp4",
            "f0": root / "f0.png", "f1": root / "f1.png", "corrupt": root / "corrupt.mp4"}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def one_error_line(err: str) -> str:
    """The single error line a terminal shows (a cleared progress bar, drawn with \\r, is gone)."""
    lines = [line.rsplit("\r", 1)[-1] for line in err.split("\n")]
    lines = [line for line in lines if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("cwm: error: "), err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- the parser
@pytest.mark.parametrize("command", [c if c != "evaluate" else "eval" for c in COMMANDS])
def test_every_subcommand_has_help_with_examples(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and "examples:" in out and f"cwm {command}" in out


def test_unknown_subcommand_suggests_the_closest(capsys):
    code, _, err = run(capsys, "flwo", "x.mp4")
    assert code == 2 and "did you mean 'flow'?" in one_error_line(err)


def test_unknown_option_suggests_the_closest(capsys, data):
    code, _, err = run(capsys, "flow", data["video"], "--strid", "2", "--weights", data["weights"])
    line = one_error_line(err)
    assert code == 2 and "--strid" in line and "did you mean --stride?" in line


def test_invalid_choice_suggests_the_closest(capsys, data):
    code, _, err = run(capsys, "flow", data["video"], "--format", "mp5")
    assert code == 2 and "did you mean 'mp4'?" in one_error_line(err)


def test_no_command_prints_usage(capsys):
    code, _, err = run(capsys)
    assert code == 2 and "usage: cwm" in err


@pytest.mark.parametrize("text", ["", "1", "1,2,3", "a,b", "1;2", "1,,2", "nan,1", "1,inf", "0x1,2",
                                  "1,2,", " , ", "\uff11,2", "1e999,0", "--1,2"])
def test_point_parser_rejects_junk_cleanly(text):
    with pytest.raises(argparse.ArgumentTypeError, match="X,Y"):
        common.parse_point(text)


@pytest.mark.parametrize("text", ["1,2", "1,2,3", "a,b,c,d", "1,2,3,4,5", "1,2,nan,4", "", "1,2,3,-inf"])
def test_move_parser_rejects_junk_cleanly(text):
    with pytest.raises(argparse.ArgumentTypeError, match="X,Y,DX,DY"):
        common.parse_move(text)


@given(st.text(max_size=40) | st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5).map(
    lambda xs: ",".join(map(str, xs))))
@settings(max_examples=300, deadline=None)
def test_point_and_move_parsers_only_raise_clean_errors(text):
    for parse in (common.parse_point, common.parse_move):
        try:
            value = parse(text)
        except argparse.ArgumentTypeError as e:
            assert "\n" not in str(e)
        else:
            assert all(np.isfinite(np.asarray(value, dtype=float)).ravel())


@given(st.text(max_size=30))
@settings(max_examples=100, deadline=None)
def test_any_move_or_point_text_exits_2_on_one_line(text):
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["counterfactual", "/nonexistent/x.png", f"--move={text}", f"--static={text}"])
    assert code == 2
    one_error_line(err.getvalue())


def test_point_and_move_parsers_accept_numbers():
    assert common.parse_point(" 3.5, -0 ") == (3.5, 0.0)
    assert common.parse_move("1,2,-3,4e0") == ((1.0, 2.0), (-3.0, 4.0))


def test_junk_move_on_the_command_line_is_one_line(capsys, data):
    code, _, err = run(capsys, "counterfactual", data["f0"], "--move", "1,2,x,4")
    assert code == 2 and "--move" in one_error_line(err)


# ------------------------------------------------------------------ predict, counterfactual
def test_predict_writes_prediction_and_comparison(capsys, data, tmp_path):
    code, out, _ = run(capsys, "predict", data["f0"], data["f1"], "--visible", "0.2",
                       "--weights", data["weights"], "-o", tmp_path)
    assert code == 0 and files(tmp_path) == ["comparison.png", "prediction.png"]
    assert read_image(tmp_path / "prediction.png").shape == (H, W, 3)
    assert str(tmp_path / "prediction.png") in out


def test_predict_refuses_to_overwrite_and_leaves_files_untouched(capsys, data, tmp_path):
    args = ["predict", data["f0"], data["f1"], "--weights", data["weights"], "-o", tmp_path]
    assert run(capsys, *args)[0] == 0
    before = {p: (tmp_path / p).read_bytes() for p in files(tmp_path)}
    code, _, err = run(capsys, *args, "--seed", "3")
    assert code == 2 and "--overwrite" in one_error_line(err)
    assert {p: (tmp_path / p).read_bytes() for p in files(tmp_path)} == before
    assert run(capsys, *args, "--seed", "3", "--overwrite")[0] == 0


def test_a_refusal_happens_before_anything_is_written(capsys, data, tmp_path, monkeypatch):
    (tmp_path / "comparison.png").write_bytes(b"mine")
    monkeypatch.setattr("cwm.load", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = run(capsys, "predict", data["f0"], data["f1"], "-o", tmp_path)
    assert code == 2 and "comparison.png" in one_error_line(err)
    assert files(tmp_path) == ["comparison.png"] and (tmp_path / "comparison.png").read_bytes() == b"mine"


def test_counterfactual_writes_the_prediction(capsys, data, tmp_path):
    code, _, _ = run(capsys, "counterfactual", data["f0"], "--move", "20,20,4,0", "--move", "30,10,0,3",
                     "--static", "2,2", "38,2", "--weights", data["weights"], "-o", tmp_path)
    assert code == 0 and files(tmp_path) == ["comparison.png", "counterfactual.png"]
    assert read_image(tmp_path / "counterfactual.png").shape == (H, W, 3)


@pytest.mark.parametrize("flag,value", [("--move", "60,20,1,1"), ("--move", "20,20,40,0"), ("--static", "-1,3")])
def test_counterfactual_points_outside_the_image(capsys, data, tmp_path, flag, value):
    extra = [] if flag == "--move" else ["--move", "5,5,1,1"]
    code, _, err = run(capsys, "counterfactual", data["f0"], flag, value, *extra,
                       "--weights", data["weights"], "-o", tmp_path)
    assert code == 2 and "outside the 48x40 image" in one_error_line(err) and files(tmp_path) == []


# ------------------------------------------------------------------- bad inputs, exit codes
@pytest.mark.parametrize("command", ["flow", "predict", "depth"])
def test_missing_input_is_one_line(capsys, data, tmp_path, command):
    code, _, err = run(capsys, command, tmp_path / "nope.mp4", "--weights", data["weights"], "-o", tmp_path / "o")
    assert code == 2 and "no such file" in one_error_line(err)
    assert not (tmp_path / "o").exists()


def test_corrupt_video_is_one_line(capsys, data, tmp_path):
    code, _, err = run(capsys, "flow", data["corrupt"], "--weights", data["weights"], "-o", tmp_path / "o")
    assert code == 2 and "corrupt.mp4" in one_error_line(err) and not (tmp_path / "o").exists()


def test_missing_weights_is_one_line(capsys, data, tmp_path):
    code, _, err = run(capsys, "predict", data["f0"], data["f1"], "--weights", tmp_path / "none", "-o", tmp_path)
    assert code == 2 and "none" in one_error_line(err)


@pytest.mark.parametrize("device", ["gpu", "cuda:99"])
def test_bad_device_is_one_line(capsys, data, tmp_path, device):
    code, _, err = run(capsys, "predict", data["f0"], data["f1"], "--weights", data["weights"], "--device", device,
                       "-o", tmp_path)
    assert code == 2 and "--device" in one_error_line(err) and files(tmp_path) == []


def test_a_bug_keeps_its_traceback(data, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise ZeroDivisionError("a real bug")
    monkeypatch.setattr("cwm.predictor.CWMPredictor.predict", broken)
    with pytest.raises(ZeroDivisionError):
        main(["predict", str(data["f0"]), str(data["f1"]), "--weights", str(data["weights"]), "-o", str(tmp_path)])


# ----------------------------------------------------------------------- flow, occlusion
@needs["flow"]
def test_flow_on_a_video(capsys, data, tmp_path):
    code, out, err = run(capsys, "flow", data["video"], "--arrows", "--color-max", "3", "--weights", data["weights"],
                         "-o", tmp_path)
    assert code == 0, err
    assert files(tmp_path) == ["flow.mp4", "flow.npz"]  # raw arrays: one .npz per video by default
    with np.load(tmp_path / "flow.npz") as z:
        flow = z["flow_000000"]
        assert len(z.files) == 3 * (FRAMES - 1) + 1
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    with open_video(tmp_path / "flow.mp4") as video:
        assert video.num_frames == FRAMES - 1 and video.size[0] >= H and video.size[1] >= 2 * W
    assert "flow.mp4" in out and "flow.npz" in out


@needs["flow"]
def test_flow_every_gap_size_and_png(capsys, data, tmp_path):
    code, _, err = run(capsys, "flow", data["video"], "--every", "2", "--gap", "2", "--size", "24", "--max-flow", "4",
                       "--format", "png", "--raw", "npy", "--layout", "single", "--weights", data["weights"],
                       "-o", tmp_path, "-q")
    assert code == 0, err
    assert files(tmp_path) == ["png/000000.png", "png/000002.png", "raw/000000.npy", "raw/000002.npy"]
    assert np.load(tmp_path / "raw/000002.npy").shape == (20, 24, 2)
    assert read_image(tmp_path / "png/000000.png").shape == (20, 24, 3)


@needs["flow"]
def test_flow_on_a_pair_as_flo(capsys, data, tmp_path):
    from cwm.flowio import read_flo

    code, _, err = run(capsys, "flow", data["f0"], data["f1"], "--format", "flo", "--weights", data["weights"],
                       "-o", tmp_path)
    assert code == 0, err
    assert files(tmp_path) == ["flow.flo"] and read_flo(tmp_path / "flow.flo").shape == (H, W, 2)
    code, _, _ = run(capsys, "flow", data["f0"], data["f1"], "--weights", data["weights"], "-o", tmp_path / "b")
    assert code == 0 and files(tmp_path / "b") == ["flow.npy", "flow.png"]


@needs["flow"]
def test_occlusion_on_a_video(capsys, data, tmp_path):
    code, _, err = run(capsys, "occlusion", data["video"], "--every", "3", "--weights", data["weights"], "-o", tmp_path)
    assert code == 0, err
    assert files(tmp_path) == ["occlusion.mp4", "occlusion.npz"]
    with np.load(tmp_path / "occlusion.npz") as z:
        assert z.files == ["occlusion_000000", "confidence_000000", "occlusion_000003", "confidence_000003",
                           "frame_index"]
        occ = z["occlusion_000003"]
        assert z["frame_index"].tolist() == [[0, 1], [3, 4]]
    assert occ.shape == (H, W) and occ.dtype == bool
    code, _, err = run(capsys, "occlusion", data["video"], "--every", "3", "--format", "npy",
                       "--weights", data["weights"], "-o", tmp_path / "npy")
    assert code == 0, err
    assert files(tmp_path / "npy") == ["raw/000000.npy", "raw/000003.npy"]
    assert np.load(tmp_path / "npy/raw/000003.npy").dtype == bool


def test_flow_usage_errors(capsys, data, tmp_path):
    for argv, words in [([data["f0"]], "one image"), ([data["f0"], data["f1"], "--every", "2"], "--every"),
                        ([data["f0"], data["f1"], "--format", "mp4"], "mp4"),
                        ([data["f0"], data["f1"], data["f1"]], "3 inputs")]:
        code, _, err = run(capsys, "flow", *argv, "--weights", data["weights"], "-o", tmp_path)
        assert code == 2 and words in one_error_line(err)
    assert files(tmp_path) == []


def test_flow_refuses_before_computing_and_leaves_nothing(capsys, data, tmp_path, monkeypatch):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "000003.npy").write_bytes(b"old")
    (tmp_path / "flow.npz").write_bytes(b"old")
    monkeypatch.setattr("cwm.load", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = run(capsys, "flow", data["video"], "--raw", "npy", "-o", tmp_path)
    assert code == 2 and "000003.npy" in one_error_line(err)
    code, _, err = run(capsys, "flow", data["video"], "-o", tmp_path)
    assert code == 2 and "flow.npz" in one_error_line(err)
    assert files(tmp_path) == ["flow.npz", "raw/000003.npy"]


class _FakeFlow:
    def __init__(self, h, w):
        self.flow = np.zeros((h, w, 2), np.float32)
        self.occlusion = np.zeros((h, w), bool)
        self.confidence = np.ones((h, w), np.float32)


def test_ctrl_c_exits_130_and_leaves_no_files(capsys, data, tmp_path, monkeypatch):
    calls = []

    def flow(predictor, f0, f1):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return _FakeFlow(*f0.shape[:2])

    monkeypatch.setattr("probes.flow.flow", lambda predictor, f0, f1, **kw: flow(predictor, f0, f1))
    code, _, err = run(capsys, "flow", data["video"], "--weights", data["weights"], "-o", tmp_path / "o")
    assert code == 130 and "interrupted" in err and len(calls) == 3
    assert not (tmp_path / "o").exists()  # neither the two finished pairs nor the partial video


@needs["flow"]
def test_a_probe_error_mid_run_is_one_line_and_leaves_nothing(capsys, data, tmp_path):
    code, _, err = run(capsys, "flow", data["video"], "--stride", "3", "--weights", data["weights"],
                       "-o", tmp_path / "o" / "deeper")
    assert code == 2 and "stride" in one_error_line(err)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ segment, depth
@needs["segments"]
def test_segment_points_and_auto(capsys, data, tmp_path):
    code, _, err = run(capsys, "segment", data["video"], "--frame", "2", "--point", "20,20", "5,35",
                       "--directions", "1", "--weights", data["weights"], "-o", tmp_path)
    assert code == 0, err
    assert files(tmp_path) == ["mask_00.png", "mask_01.png", "masks.npy", "overlay.png"]
    masks = np.load(tmp_path / "masks.npy")
    assert masks.shape == (2, H, W) and masks.dtype == bool
    assert set(np.unique(read_image(tmp_path / "mask_00.png"))) <= {0, 255}
    code, _, err = run(capsys, "segment", data["f0"], "--auto", "--directions", "1",
                       "--weights", data["weights"], "-o", tmp_path / "auto")
    assert code == 0, err
    found = np.load(tmp_path / "auto" / "masks.npy")
    assert files(tmp_path / "auto") == [*(f"mask_{i:02d}.png" for i in range(len(found))), "masks.npy", "overlay.png"]
    code, _, err = run(capsys, "segment", data["f0"], "--point", "1,2", "--auto", "-o", tmp_path / "x")
    assert code == 2 and "not both" in one_error_line(err)


@needs["depth"]
def test_depth_pair_and_video(capsys, data, tmp_path):
    code, _, err = run(capsys, "depth", data["f0"], data["f1"], "--stereo", "--weights", data["weights"],
                       "-o", tmp_path)
    assert code == 0, err
    assert files(tmp_path) == ["depth.png", "inverse_depth.npy"]
    inv = np.load(tmp_path / "inverse_depth.npy")
    assert inv.shape == (H, W) and inv.dtype == np.float32
    assert read_image(tmp_path / "depth.png").shape == (H, W, 3)
    code, _, err = run(capsys, "depth", data["video"], "--gap", "2", "--motion", "none", "--weights", data["weights"],
                       "-o", tmp_path / "v")
    assert code == 0, err
    assert files(tmp_path / "v") == ["depth.png", "inverse_depth.npy"]
    code, _, err = run(capsys, "depth", data["f0"], data["f1"], "--stereo", "--motion", "affine", "-o", tmp_path / "x")
    assert code == 2 and "--motion" in one_error_line(err)


# ------------------------------------------------------------------ weights, env, eval, pretrain
def test_weights_list_and_unknown_download(capsys):
    code, out, _ = run(capsys, "weights", "list")
    assert code == 0 and "default" in out and "eccv2024-2frame" in out and "cache:" in out
    code, _, err = run(capsys, "weights", "download", "eccv2024-2frme")
    assert code == 2 and "did you mean 'eccv2024-2frame'?" in one_error_line(err)


def test_env_reports_versions_and_paths(capsys):
    code, out, _ = run(capsys, "env")
    for key in ("python:", "torch:", "timm:", "numpy:", "opencv:", "decord:", "av:", "accelerate:",
                "cuda available:", "bf16 (cpu):", "video backends:", "weights cache:", "embedded model:"):
        assert key in out
    assert code == 0


@needs["flow"]
def test_eval_scores_the_model_on_a_small_suite(capsys, data, tmp_path, monkeypatch):
    from cwm import evaluation

    monkeypatch.setattr(evaluation, "default_suite", lambda quick=False: (
        evaluation.SuiteEntry(11, (32, 32), "objects"), evaluation.SuiteEntry(11, (32, 32), "stereo")))
    monkeypatch.setattr(evaluation, "generator_speed", lambda *a, **k: 1.0)
    out_json = tmp_path / "report.json"
    code, _, err = run(capsys, "eval", "--probes", "flow", "occlusion", "--weights", data["weights"],
                         "--out", out_json)
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert "cwm" in report["flow"] and "dis" in report["flow"] and "cwm" in report["occlusion"]
    code, _, err = run(capsys, "eval", "--baselines-only", "--out", out_json)
    assert code == 2 and "--overwrite" in one_error_line(err)


def test_pretrain_passes_arguments_through(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr("pretrain.__main__.main", lambda argv: seen.append(argv) or 0)
    code, _, _ = run(capsys, "pretrain", "--data", "synthetic", "train.max_steps=1", "--resume")
    assert code == 0 and seen == [["--data", "synthetic", "train.max_steps=1", "--resume"]]


def test_pretrain_help_shows_both_helps(capsys):
    code, out, _ = run(capsys, "pretrain", "--help")
    assert code == 0 and "examples:" in out and "python -m pretrain" in out


def test_pretrain_usage_errors_are_one_line_with_a_hint(capsys):
    code, out, err = run(capsys, "pretrain", "--outptu-dir", "x")
    assert code == 2 and err.count("\n") == 1 and "did you mean --output-dir?" in err and "Traceback" not in err
    code, out, err = run(capsys, "pretrain", "export")
    assert code == 2 and err.count("\n") == 1 and "required: checkpoint" in err


# ------------------------------------------------------------------ the installed script
def _script() -> list[str]:
    exe = shutil.which("cwm", path=str(Path(sys.executable).parent)) or shutil.which("cwm")
    return [exe] if exe else [sys.executable, "-m", "cwm.cli.main"]


@needs["flow"]
def test_the_cwm_script_end_to_end(data, tmp_path):
    proc = subprocess.run([*_script(), "flow", str(data["video"]), "--every", "3", "--weights", str(data["weights"]),
                           "-o", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert files(tmp_path) == ["flow.mp4", "flow.npz"]
    assert proc.stdout.split() == [str(tmp_path / "flow.mp4"), str(tmp_path / "flow.npz")]


def test_the_cwm_script_user_error(data, tmp_path):
    proc = subprocess.run([*_script(), "counterfactual", str(tmp_path / "missing.png"), "--move", "1,2,3,4",
                           "--weights", str(data["weights"])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "missing.png" in one_error_line(proc.stderr)


def test_parser_builds_without_torch():
    code = "import sys, cwm.cli.main as m; m.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_cli_choices_match_the_library():
    """Choices the parser repeats (to stay torch-free) against their sources."""
    from cwm import viz
    from cwm.cli import depth
    from probes.depth import MOTIONS

    assert depth.MOTIONS == MOTIONS
    parser = build_parser()[1]["depth"]
    cmap = next(a for a in parser._actions if a.dest == "cmap")
    assert tuple(cmap.choices) == viz._COLORMAPS
