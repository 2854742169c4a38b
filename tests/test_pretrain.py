"""Pretraining (issue 6): learning, multi-process agreement, exact resume, bad videos, export.

Everything runs on the CPU with a micro model (32x32, 4 patches a frame) so the file stays well
under a minute and a half on two cores. Runs that need a fresh process (SIGKILL, two processes)
are subprocesses; the rest call ``pretrain.__main__.main`` in-process.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain.__main__ import main
from pretrain.checkpointing import TrainingError, latest_checkpoint, list_checkpoints
from pretrain.config import ConfigError, resolve
from pretrain.data import SkippedVideoWarning

ROOT = Path(__file__).resolve().parents[1]
MICRO = ["--data", "synthetic", "model.arch.img_size=[32,32]", "model.arch.enc_dim=64", "model.arch.enc_depth=2",
         "model.arch.enc_heads=2", "model.arch.dec_dim=64", "model.arch.dec_depth=1", "model.arch.dec_heads=2",
         "train.num_threads=1", "train.cpu=true", "train.mixed_precision=no", "train.eval_batch=8", "data.num_workers=0",
         "data.crop_scale=1", "train.export_at_end=false", "train.progress=off"]


def metrics(run: Path, key: str = "loss") -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r[key]) for r in rows if key in r]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="1")
    env.pop("LOCAL_RANK", None)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------ learning
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """250 steps on synthetic scenes with large motion (gap 5..7 frames), where copying frame 0
    is a poor guess; the model must do better from frame 0 and the visible half of frame 1."""
    run = tmp_path_factory.mktemp("learn")
    assert main([*MICRO, "--output-dir", str(run), "train.max_steps=250", "train.batch_size=16",
                 "train.mask_ratio=0.5", "optim.lr=3e-3", "optim.warmup_steps=20", "train.log_every=50",
                 "train.eval_every=250", "train.eval_batch=64", "train.checkpoint_every=0",
                 "train.export_at_end=true", "data.gap_frames=[5,7]", "data.clips_per_scene=16",
                 "data.scene_overrides.camera_speed=0.15", "data.scene_overrides.object_speed=0.15"]) == 0
    return run


def test_training_beats_copy_frame0(trained):
    ev = dict(metrics(trained, "eval/loss_visible"))
    copy0 = dict(metrics(trained, "eval/copy_frame0"))[250]
    assert ev[250] < 0.85 * copy0, (ev[250], copy0)   # measured: 0.032 against 0.048
    assert ev[250] < ev[0] / 10                       # and far below the untrained model
    assert (trained / "config.yaml").is_file() and latest_checkpoint(trained).name == "step_00000250"


def test_export_then_cwm_load_reproduces_predictions(trained, tmp_path):
    import cwm
    from cwm.masking import make_mask
    from pretrain.export import export_checkpoint, load_checkpoint_weights

    ckpt = latest_checkpoint(trained)
    ours = cwm.build_model(cwm.CWMConfig.from_dict(json.loads((ckpt / "cwm_checkpoint.json").read_text())["model"]))
    ours.load_state_dict(load_checkpoint_weights(ckpt))
    ours.eval()
    x = torch.randn(2, 3, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = make_mask(2, 2, (4, 4), 0.75, seed=1)
    with torch.no_grad():
        expected = ours(x, mask)
    for folder in (trained / "export", export_checkpoint(trained, tmp_path / "w")):
        model = cwm.load(str(folder), device="cpu").model
        with torch.no_grad():
            assert torch.equal(model(x, mask), expected)
    assert main(["export", str(ckpt), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------ processes
def test_two_processes_match_one(tmp_path):
    """Same global batch (2 x 4 against 1 x 8): the same clips, masks and loss trajectory."""
    common = [*MICRO, "train.max_steps=5", "train.log_every=1", "train.eval_every=0",
              "train.checkpoint_every=0", "train.mask_ratio=[0.5,0.9]", "optim.lr=3e-3", "optim.warmup_steps=2"]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "pretrain", "--output-dir", str(tmp_path / "two"),
           *common, "train.batch_size=4"]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert main([*common, "--output-dir", str(tmp_path / "one"), "train.batch_size=8"]) == 0
    out, _ = proc.communicate(timeout=200)
    assert proc.returncode == 0, out[-3000:]
    assert "effective batch 8 = 4 per process x 1 accumulation x 2 process(es)" in out
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in two] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([v for _, v in two], [v for _, v in one], rtol=1e-4)


# ------------------------------------------------------------------------------------ resume
def test_sigkill_then_resume_is_bitwise_exact(tmp_path):
    from safetensors.torch import load_file

    args = [*MICRO, "train.max_steps=24", "train.batch_size=8", "train.checkpoint_every=3",
            "train.keep_checkpoints=2", "train.log_every=4", "train.eval_every=0", "train.mask_ratio=[0.5,0.9]",
            "optim.lr=3e-3", "optim.warmup_steps=4"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pretrain", *args, "--output-dir", str(killed)],
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    # Any complete checkpoint at step >= 6: a poller starved by a loaded machine may miss step 6
    # itself, which rotation deletes once steps 9 and 12 are saved.
    while (newest := latest_checkpoint(killed)) is None or int(newest.name.split("_")[1]) < 6:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = latest_checkpoint(killed)
    assert 6 <= int(killed_at.name.split("_")[1]) < 24, killed_at
    assert len(list_checkpoints(killed)) <= 2  # rotation
    assert main([*args, "--output-dir", str(tmp_path / "whole")]) == 0  # the uninterrupted reference

    with pytest.raises(ConfigError, match="--resume"):  # a fresh start must not clobber the run
        from pretrain.train import train
        train(resolve(overrides=[a for a in args if "=" in a] + [f"train.output_dir={killed}"]))
    assert main(["--output-dir", str(killed), "--resume"]) == 0  # the saved config.yaml is reused
    a = load_file(str(latest_checkpoint(tmp_path / "whole") / "model.safetensors"))
    b = load_file(str(latest_checkpoint(killed) / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(killed)[-1] == metrics(tmp_path / "whole")[-1]


def test_nan_loss_stops_naming_the_step(tmp_path, monkeypatch):
    from pretrain import train as train_mod

    real = train_mod._LoopState.forward_loss

    def poisoned(self, batch, step, micro):  # the loss of step 3 (0-based 2) is NaN
        loss = real(self, batch, step, micro)
        return loss * float("nan") if step == 2 else loss

    monkeypatch.setattr(train_mod._LoopState, "forward_loss", poisoned)
    saved = {}  # the bytes of each checkpoint as it was written
    real_save = train_mod.ckpts.save_checkpoint

    def record(acc, run_dir, step, *args, **kwargs):
        final = real_save(acc, run_dir, step, *args, **kwargs)
        saved[final.name] = {p.name: p.read_bytes() for p in final.iterdir()}
        return final

    monkeypatch.setattr(train_mod.ckpts, "save_checkpoint", record)
    cfg = resolve(overrides=[a for a in MICRO if "=" in a] + [
        "data.source=synthetic", f"train.output_dir={tmp_path}", "train.max_steps=6", "train.batch_size=4",
        "train.eval_every=0", "train.checkpoint_every=2"])
    with pytest.raises(TrainingError, match=r"step 3; .*last checkpoint: .*step_00000002\)"):
        train_mod.train(cfg)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000002"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000002"]  # nothing partial
    ckpt = tmp_path / "checkpoints" / "step_00000002"
    assert {p.name: p.read_bytes() for p in ckpt.iterdir()} == saved["step_00000002"]  # not overwritten
    from pretrain.export import load_checkpoint_weights

    assert all(torch.isfinite(v).all() for v in load_checkpoint_weights(ckpt).values())
    assert not (tmp_path / "export").exists()


# ------------------------------------------------------------------------------------ videos
def _write_videos(folder: Path) -> None:
    from cwm.io import write_video
    from cwm.synthetic import make_scene

    (folder / "sub").mkdir(parents=True)
    write_video(folder / "sub" / "good.mp4", make_scene(0, (48, 48), num_frames=12).frames, fps=10)
    write_video(folder / "short.mp4", make_scene(1, (48, 48), num_frames=2).frames, fps=10)
    (folder / "empty.mkv").write_bytes(b"")
    (folder / "corrupt.avi").write_bytes(np.random.default_rng(0).bytes(4000))
    (folder / "notes.txt").write_text("not a video")


def test_folder_with_bad_videos_trains_on_the_good_one(tmp_path, capsys):
    data = tmp_path / "videos"
    _write_videos(data)
    args = [a for a in MICRO if a not in ("--data", "synthetic")]
    with pytest.warns(SkippedVideoWarning) as record:
        assert main([*args, "--data", str(data), "--output-dir", str(tmp_path / "run"), "train.max_steps=2",
                     "train.batch_size=4", "data.gap_frames=[2,3]", "data.crop_scale=[0.5,1]",
                     "train.eval_every=0", "train.log_every=1", "train.eval_batch=2"]) == 0
    reasons = {Path(str(w.message).split("'")[1]).name: str(w.message) for w in record}
    assert sorted(reasons) == ["corrupt.avi", "empty.mkv", "short.mp4"], reasons
    assert "empty" in reasons["empty.mkv"] and "too short: 2 frame(s)" in reasons["short.mp4"]
    assert "no decodable frames" in reasons["corrupt.avi"]
    assert "1 video(s) under" in capsys.readouterr().out
    assert metrics(tmp_path / "run", "skipped_videos") == [(0, 3)]  # counted in the run's log
    assert len(metrics(tmp_path / "run")) == 2


def test_empty_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "nothing").mkdir()
    assert main(["--data", str(tmp_path / "nothing"), "--output-dir", str(tmp_path / "run")]) == 2
    assert "no videos (mp4, avi, mov, mkv, webm) found under" in capsys.readouterr().err


def test_video_clips_decode_only_what_they_need(tmp_path):
    """Crop and flip are shared by both frames; the gap in ms follows the frame rate."""
    from pretrain.data import ClipSpec, VideoClips, scan_videos

    data = tmp_path / "videos"
    _write_videos(data)
    spec = ClipSpec(size=(32, 32), num_frames=2, patches=16, gap_frames=(1, 1), gap_ms=(300.0, 300.0),
                    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, seed=0)
    usable, skipped = scan_videos(data, spec, ("decord", "pyav", "opencv"))
    assert [Path(v.path).name for v in usable] == ["good.mp4"] and len(skipped) == 3
    ds = VideoClips(spec, usable, length=4)
    ds._reader(usable[0].path).get = lambda idx: np.stack([np.full((48, 48, 3), i, np.uint8) for i in idx])
    item = ds[(0, 0)]
    first, second = item["video"][0, 0, 0, 0].item(), item["video"][1, 0, 0, 0].item()
    assert second - first == 3  # 300 ms at 10 fps
    assert item["video"].shape == (2, 32, 32, 3) and item["noise"].shape == (16,)


def test_sampler_pass_spans_whole_epochs_with_unchanged_keys():
    """A small folder's epochs are grouped into longer DataLoader passes (so workers prefetch
    across epoch ends); the keys of every step stay those of one epoch per pass."""
    from pretrain.data import MIN_STEPS_PER_PASS, ClipSampler, epochs_per_pass

    single, grouped = ClipSampler(8, True, 0), ClipSampler(8, True, 0, epochs_per_pass=3)
    grouped.set_epoch(2)
    expected = []
    for epoch in (6, 7, 8):
        single.set_epoch(epoch)
        expected += list(single)
    assert list(grouped) == expected and len(grouped) == 24 and expected[0][0] == 6
    order = [[i for _, i in expected[k:k + 8]] for k in (0, 8)]
    assert sorted(order[0]) == list(range(8)) and order[0] != order[1]  # each epoch its own permutation
    assert epochs_per_pass(32, 32) == MIN_STEPS_PER_PASS and epochs_per_pass(800_000, 32) == 1


def test_video_backends_default_to_the_library_order(tmp_path):
    """data.backends unset follows cwm.io.default_backends per file (PyAV first for AVI, where
    decord mis-seeks); a list set in the config is used as given; a bad name is a config error."""
    from cwm.io import open_video, write_video
    from cwm.synthetic import make_scene
    from pretrain.data import VideoClips, build_data

    frames = make_scene(0, (64, 64), num_frames=12).frames
    (tmp_path / "videos").mkdir()
    for name in ("a.avi", "b.mp4"):
        write_video(tmp_path / "videos" / name, frames, fps=10)
    base = [f"data.source={tmp_path / 'videos'}", "model.arch.img_size=[32,32]", "data.num_workers=0"]
    with open_video(tmp_path / "videos" / "b.mp4") as r:  # the library's own choice (decord if installed)
        mp4 = r.backend
    for extra, expected in (([], {"a.avi": "pyav", "b.mp4": mp4}),
                            (["data.backends=[opencv,pyav]"], {"a.avi": "opencv", "b.mp4": "opencv"})):
        cfg = resolve(overrides=base + extra)
        ds = build_data(cfg, cfg.model_config(), unit=1, warn=False).dataset
        assert isinstance(ds, VideoClips) and len(ds.videos) == 2
        assert {Path(v.path).name: ds._reader(v.path).backend for v in ds.videos} == expected
    assert resolve(overrides=base).data.backends is None
    with pytest.raises(ConfigError, match="data.backends must be null .* or a list from"):
        resolve(overrides=["data.backends=[decrd,pyav]"])


# ------------------------------------------------------------------------------------ benchmark
def test_speed_benchmark_writes_its_table(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import pretrain_speed
    finally:
        sys.path.pop(0)
    out = tmp_path / "speed.json"
    assert pretrain_speed.main(["--out", str(out), "--configs", "tiny_64", "--steps", "4", "--num-videos", "2",
                                "--threads", "1"]) == 0
    row = json.loads(out.read_text())["configs"]["tiny_64"]
    assert row["samples_per_s"] > 0 and row["tokens_per_s"] == pytest.approx(row["samples_per_s"] * 128, rel=0.01)
    assert 0 <= row["data_fraction"] < 1


# ------------------------------------------------------------------------------------ config
def test_config_layers_and_errors(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  batch_size: 7\n  mixed_precision: no\noptim:\n  lr: 1e-3\n")
    cfg = resolve(f, ["train.batch_size=9", "train.mask_ratio=[0.6,0.9]", "model.arch.enc_depth=2"])
    assert (cfg.train.batch_size, cfg.train.mixed_precision, cfg.optim.lr) == (9, "no", 1e-3)
    assert cfg.mask_range() == (0.6, 0.9) and cfg.model_config().enc_depth == 2
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        resolve(overrides=["train.max_step=3"])
    with pytest.raises(ConfigError, match="mask_ratio"):
        resolve(overrides=["train.mask_ratio=[0.9,1.0]"])


def test_synthetic_preset_list_cycles_per_scene():
    from cwm.synthetic import make_scene
    from pretrain.data import ClipSpec, SyntheticClips

    cfg = resolve(overrides=["data.scene_preset=[camera,stereo]", "model.arch.img_size=[32,32]"])
    spec = ClipSpec.from_config(cfg, cfg.model_config())
    ds = SyntheticClips(spec, 64, cfg.data.scene_preset, scene_frames=4, clips_per_scene=8)
    for scene, preset in [(0, "camera"), (1, "stereo"), (2, "camera")]:
        seed = int(np.random.SeedSequence([spec.seed, 0, scene, 1]).generate_state(1)[0])
        np.testing.assert_array_equal(ds.scene_frames_for(0, scene), make_scene(seed, (32, 32), 4, preset=preset).frames)
    with pytest.raises(ConfigError, match="unknown scene preset 'objcts'; did you mean 'objects'"):
        SyntheticClips(spec, 64, ["camera", "objcts"])
