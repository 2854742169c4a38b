"""Folders of videos (cwm.cli.folders): one vs two processes, resume, failures, SIGKILL, batching."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cwm.cli.discovery import Item, balance, collection
from cwm.cli.main import main
from conftest import tiny_weights_and_clips

ROOT = Path(__file__).resolve().parents[1]
CLIPS = {"a.mp4": 7, "b.mp4": 5, "deep/c.mp4": 6}  # name -> frames


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return tiny_weights_and_clips(tmp_path_factory.mktemp("folders"), CLIPS)


def flow_cmd(data, out: Path, *extra) -> list[str]:
    return ["flow", str(data["in"]), "-o", str(out), "--weights", str(data["weights"]), "--format", "raw",
            "--device", "cpu", *extra]


def outputs(out: Path) -> dict[str, bytes]:
    """Every output file's arrays (npz members), by path relative to ``out``."""
    found = {}
    for p in sorted(out.rglob("flow.npz")):
        with np.load(p) as z:
            found[p.relative_to(out).as_posix()] = {k: z[k] for k in z.files}
    return found


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b) == ["a/flow.npz", "b/flow.npz", "deep/c/flow.npz"]
    for name in a:
        assert sorted(a[name]) == sorted(b[name])
        for k in a[name]:
            np.testing.assert_array_equal(a[name][k], b[name][k], err_msg=f"{name}:{k}")


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": "1"}


def test_one_process_equals_two_through_accelerate_and_a_rerun_skips(data, tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(flow_cmd(data, one)) == 0
    err = capsys.readouterr().err
    assert "3 done, 0 skipped, 0 failed of 3 videos" in err
    rows = {r["output"]: r for r in manifest(one)["videos"]}
    assert {k: (r["status"], r["frames"], r["pairs"]) for k, r in rows.items()} == \
        {"a": ("done", 7, 6), "b": ("done", 5, 4), "deep/c": ("done", 6, 5)}
    assert all(r["seconds"] > 0 and r["finished"] for r in rows.values())
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           "-m", "cwm", *flow_cmd(data, two)], capture_output=True, text=True, env=env(),
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 done, 0 skipped, 0 failed of 3 videos" in proc.stderr and "2 processes" in proc.stderr
    pids = {r["pid"] for r in manifest(two)["videos"]}
    assert len(pids) == 2  # the videos were split between the two processes
    assert_same(outputs(one), outputs(two))
    # a re-run skips all three, writes nothing new
    before = {p: p.stat().st_mtime_ns for p in two.rglob("flow.npz")}
    assert main(flow_cmd(data, two)) == 0
    assert "0 done, 3 skipped, 0 failed of 3 videos" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in two.rglob("flow.npz")} == before
    # --overwrite redoes them
    assert main(flow_cmd(data, two, "--overwrite")) == 0
    assert "3 done, 0 skipped" in capsys.readouterr().err
    assert_same(outputs(one), outputs(two))


def test_a_corrupt_clip_is_recorded_as_failed_and_the_others_finish(data, tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree(data["in"], src)
    (src / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    out = tmp_path / "out"
    cmd = flow_cmd(data, out)
    cmd[1] = str(src)
    assert main(cmd) == 2
    err = capsys.readouterr().err
    assert "3 done, 0 skipped, 1 failed of 4 videos" in err
    assert "failed: broken: cannot read video" in err
    rows = {r["output"]: r for r in manifest(out)["videos"]}
    assert rows["broken"]["status"] == "failed" and "\n" not in rows["broken"]["reason"]
    assert not (out / "broken").exists()
    assert len(outputs(out)) == 3
    assert not list(out.glob(".cwm-partial-*"))  # no temporary folder left


def test_sigkill_mid_run_then_rerun_leaves_complete_outputs(data, tmp_path, capsys):
    reference, out = tmp_path / "ref", tmp_path / "out"
    assert main(flow_cmd(data, reference)) == 0
    proc = subprocess.Popen([sys.executable, "-m", "cwm", *flow_cmd(data, out)], env=env(), cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = out / ".cwm-manifest"
    deadline = time.time() + 120
    while time.time() < deadline and not (records.is_dir() and list(records.glob("*.json"))):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recorded = list(records.glob("*.json"))
    assert 1 <= len(recorded) < 3, "the run should be killed after its first video and before its last"
    # only finished (recorded) videos are under their final names; the rest is in a hidden
    # temporary folder
    done = {json.loads(p.read_text())["output"] for p in recorded}
    # (a kill between a video's record and its rename leaves it complete in the temporary folder)
    assert {Path(name).parent.as_posix() for name in outputs(out) if not name.startswith(".")} <= done
    finished = sum((out / name).is_dir() for name in done)  # recorded and renamed into place
    assert main(flow_cmd(data, out)) == 0
    err = capsys.readouterr().err
    assert f"{3 - finished} done, {finished} skipped, 0 failed" in err
    assert_same(outputs(reference), outputs(out))
    assert not list(out.glob(".cwm-partial-*"))  # the dead run's temporary folder is removed


def test_balance_is_greedy_longest_first():
    items = [Item(Path(n), n, f) for n, f in [("a", 10), ("b", 8), ("c", 7), ("d", 3), ("e", 2)]]
    shares = balance(items, 2)
    assert [[i.name for i in s] for s in shares] == [["a", "d", "e"], ["b", "c"]]
    assert sorted(i.name for s in balance(items, 3) for i in s) == ["a", "b", "c", "d", "e"]
    assert [[i.name for i in s] for s in balance(items, 1)] == [["a", "b", "c", "d", "e"]]


def test_collection_names_globs_frame_folders_and_skips_the_output_folder(tmp_path):
    from cwm.io import write_image

    root = tmp_path / "data"
    for rel in ("x.mp4", "x.avi", "s/y.mkv"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    seq = root / "JPEGImages" / "480p" / "bear"
    seq.mkdir(parents=True)
    for i in range(3):
        write_image(seq / f"{i:05d}.jpg", np.zeros((8, 8, 3), np.uint8))
    (root / "out" / "old").mkdir(parents=True)
    (root / "out" / "old" / "flow.mp4").write_bytes(b"")
    found_root, items = collection([str(root)], root / "out")
    assert found_root == root
    assert [i.name for i in items] == ["JPEGImages/480p/bear", "s/y", "x_avi", "x_mp4"]
    assert collection([str(seq)], None) is None  # one folder of frames: one video
    assert collection([str(root / "x.mp4")], None) is None
    found_root, items = collection([str(root / "**" / "*.mkv")], None)
    assert found_root == root / "s" and [i.name for i in items] == ["y"]
    from cwm.errors import InputError

    with pytest.raises(InputError, match="no videos"):
        collection([str(root / "*.webm")], None)


def test_prefetch_keeps_order_and_raises_the_readers_error():
    from cwm.cli.readahead import readahead as prefetch

    assert list(prefetch(iter(range(50)), 3)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("decode failed")

    got = []
    with pytest.raises(ValueError, match="decode failed"):
        for x in prefetch(broken(), 2):
            got.append(x)
    assert got == [1]


def test_batch_gives_the_probe_k_pairs_at_once(data, tmp_path, capsys):
    """--batch 4 over 6 pairs: the probe's batched results for pairs 0-3 and 4-5, in order, and
    bit-identical to --batch 1 (a pair's probe masks come from the seed alone); so a folder re-run
    with another --batch skips its finished videos instead of refusing them."""
    import cwm
    from cwm.io import open_video
    from probes.flow import flow

    video = data["in"] / "a.mp4"
    assert main(["flow", str(video), "--weights", str(data["weights"]), "--format", "raw", "--device", "cpu",
                 "-q", "-o", str(tmp_path / "b4"), "--batch", "4"]) == 0
    with open_video(video) as reader:
        frames = np.stack(list(reader.iter_frames()))
    predictor = cwm.load(str(data["weights"]), device="cpu")
    expected = flow(predictor, frames[0:4], frames[1:5]) + flow(predictor, frames[4:6], frames[5:7])
    with np.load(tmp_path / "b4" / "flow.npz") as z:
        assert z["frame_index"].tolist() == [[t, t + 1] for t in range(6)]
        for t, r in enumerate(expected):
            np.testing.assert_array_equal(z[f"flow_{t:06d}"], r.flow.astype(np.float32))
            np.testing.assert_array_equal(z[f"occlusion_{t:06d}"], r.occlusion)
    assert main(["flow", str(video), "--weights", str(data["weights"]), "--format", "raw", "--device", "cpu",
                 "-q", "-o", str(tmp_path / "b1")]) == 0
    with np.load(tmp_path / "b4" / "flow.npz") as z4, np.load(tmp_path / "b1" / "flow.npz") as z1:
        assert sorted(z4.files) == sorted(z1.files)
        for name in z1.files:
            np.testing.assert_array_equal(z4[name], z1[name])
    out = tmp_path / "folder"
    assert main(flow_cmd(data, out, "--batch", "4")) == 0
    capsys.readouterr()
    assert main(flow_cmd(data, out)) == 0  # --batch 1 now: everything is already done
    assert "0 done, 3 skipped, 0 failed of 3 videos" in capsys.readouterr().err


def test_python_dash_m_cwm():
    proc = subprocess.run([sys.executable, "-m", "cwm", "--version"], capture_output=True, text=True, env=env())
    assert proc.returncode == 0 and proc.stdout.startswith("cwm ")


def test_one_frames_folder_for_segment_and_depth(data, tmp_path, capsys, monkeypatch):
    from cwm.io import open_video, write_image

    seq = tmp_path / "bear"
    seq.mkdir()
    with open_video(data["in"] / "b.mp4") as reader:
        for i, frame in enumerate(reader.iter_frames()):
            write_image(seq / f"{i:05d}.png", frame)
    monkeypatch.chdir(tmp_path)
    weights = ["--weights", str(data["weights"]), "--device", "cpu", "-q"]
    assert main(["segment", str(seq), "--point", "5,5", *weights]) == 0
    assert main(["depth", str(seq), "--gap", "2", *weights]) == 0
    assert (tmp_path / "cwm_out" / "bear_segment" / "masks.npy").is_file()
    assert (tmp_path / "cwm_out" / "bear_depth" / "inverse_depth.npy").is_file()
