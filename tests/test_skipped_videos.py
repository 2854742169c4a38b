"""A video that passes the scan but fails mid-run (a file cut short: "the stream ends after N
decodable frames") appears in the end-of-run summary of skipped videos, with its reason, beside
those the scan skipped; also when a DataLoader worker hit it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain.__main__ import main
from pretrain.data import ClipSpec, SkippedVideoWarning, VideoClips, scan_videos
from pretrain.skips import LOG_NAME, read, record
from test_pretrain import MICRO


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """good.mp4 (24 frames), cut.mp4 (its index says 24 frames; the data stops in frame 10) and an
    empty.mkv."""
    from cwm.io import write_video
    from cwm.synthetic import make_scene

    folder = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    frames = [np.clip(f.astype(int) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8)
              for f in make_scene(1, (48, 48), num_frames=24).frames]  # noise: real content to decode
    write_video(folder / "good.mp4", frames, fps=10)
    data = (folder / "good.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])  # the index comes first: it still opens
    (folder / "empty.mkv").write_bytes(b"")
    return folder


def test_a_video_failing_mid_run_is_in_the_summary(videos, tmp_path, capsys):
    run = tmp_path / "run"
    args = [a for a in MICRO if a not in ("--data", "synthetic", "data.num_workers=0")]
    with pytest.warns(SkippedVideoWarning):
        assert main([*args, "--data", str(videos), "--output-dir", str(run), "data.num_workers=1",
                     "train.max_steps=3", "train.batch_size=4", "data.gap_frames=[2,3]", "train.eval_every=0",
                     "train.eval_batch=2", "data.crop_scale=[0.5,1]"]) == 0
    out = capsys.readouterr().out
    assert "2 video(s) under" in out and "1 skipped" in out  # the scan passed cut.mp4
    summary = out[out.index("done: step 3"):].splitlines()[1:]
    assert summary[:2] == [f"skipped 2 video(s) (listed in {run / LOG_NAME}):",
                           f"  {videos / 'empty.mkv'}: cannot read video '{videos / 'empty.mkv'}': the file is "
                           "empty (0 bytes)"]
    logged = read(run / LOG_NAME)
    assert [p for p, _ in logged] == [str(videos / "empty.mkv"), str(videos / "cut.mp4")]
    # cut.mp4's one-line reason, as the reader gave it (which frame, or the decoder's words, depends on
    # the clip that hit the cut first)
    assert len(summary) == 3 and summary[2] == f"  {videos / 'cut.mp4'}: {logged[1][1]}"
    assert logged[1][1].startswith("cannot ") and f"'{videos / 'cut.mp4'}'" in logged[1][1]


def test_a_failure_in_a_dataloader_worker_reaches_the_log(videos, tmp_path):
    spec = ClipSpec(size=(32, 32), num_frames=2, patches=16, gap_frames=(2, 3), gap_ms=None,
                    crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False, seed=0)
    usable, _ = scan_videos(videos, spec)
    cut = [v for v in usable if v.path.endswith("cut.mp4")]
    ds = VideoClips(spec, cut + [v for v in usable if v not in cut], length=16)
    ds.skip_log = str(tmp_path / LOG_NAME)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1, sampler=[(0, i) for i in range(16)])
    batches = list(loader)  # the worker warns on its own stderr; the log is how the run learns of it
    assert len(batches) == 4  # every item came from the good video once cut.mp4 failed
    (path, reason), = read(tmp_path / LOG_NAME)
    assert path == cut[0].path and reason.startswith("cannot ") and f"'{cut[0].path}'" in reason


def test_the_log_reads_back_once_per_video_and_survives_a_torn_line(tmp_path):
    log = tmp_path / "sub" / LOG_NAME
    record(log, "a.mp4", "first\nreason")
    record(log, "b.mp4", "other")
    record(log, "a.mp4", "again")
    record(None, "c.mp4", "not recorded")
    with open(log, "a") as f:
        f.write('{"path": "d.mp4", "rea')  # a process killed mid-write
    assert read(log) == [("a.mp4", "first reason"), ("b.mp4", "other")]
    assert read(tmp_path / "missing.jsonl") == []
    assert json.loads(log.read_text().splitlines()[0]) == {"path": "a.mp4", "reason": "first reason"}
