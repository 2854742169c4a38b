"""``cwm track`` over many videos (a folder, recursive): one output folder per video equal to a
single-video run, per-video query files, resume, and the manifest's refusal of changed options."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cwm.cli.main import main
from conftest import tiny_weights_and_clips

CLIPS = {"a.mp4": 4, "sub/b.mp4": 5}  # name -> frames


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return tiny_weights_and_clips(tmp_path_factory.mktemp("track_folders"), CLIPS)


def track(capsys, data, source, out, *extra) -> tuple[int, str]:
    code = main(["track", str(source), "-o", str(out), "--weights", str(data["weights"]), "--device", "cpu",
                 "--mode", "direct", "-q", *map(str, extra)])
    return code, capsys.readouterr().err


def arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def assert_same_tracks(a: Path, b: Path) -> None:
    x, y = arrays(a), arrays(b)
    assert sorted(x) == sorted(y)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_a_folder_gives_each_video_its_single_run_then_skips_and_refuses_new_options(capsys, data, tmp_path):
    out = tmp_path / "out"
    code, err = track(capsys, data, data["in"], out, "--grid", 2)
    assert code == 0, err
    assert "2 done, 0 skipped, 0 failed of 2 videos" in err
    for name in ("a", "sub/b"):
        code, err = track(capsys, data, data["in"] / f"{name}.mp4", tmp_path / "one" / name, "--grid", 2)
        assert code == 0, err
        assert_same_tracks(out / name / "tracks.npz", tmp_path / "one" / name / "tracks.npz")
        assert (out / name / "tracks.mp4").stat().st_size > 0
    rows = {r["output"]: r for r in json.loads((out / "manifest.json").read_text())["videos"]}
    assert rows["a"]["options"]["command"] == "track" and rows["a"]["options"]["grid"] == 2
    # the same command again: nothing redone
    before = {p: p.stat().st_mtime_ns for p in out.rglob("tracks.npz")}
    code, err = track(capsys, data, data["in"], out, "--grid", 2)
    assert code == 0 and "0 done, 2 skipped" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("tracks.npz")} == before
    # other options: one line naming the option and --overwrite; nothing touched
    code, err = track(capsys, data, data["in"], out, "--grid", 3)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--grid 2" in err and "--grid 3" in err and "--overwrite" in err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("tracks.npz")} == before
    # --overwrite redoes them with the new options
    code, err = track(capsys, data, data["in"], out, "--grid", 3, "--overwrite")
    assert code == 0 and "2 done, 0 skipped" in err
    assert arrays(out / "a" / "tracks.npz")["tracks"].shape[0] == 9


def test_per_video_query_files_and_their_digests(capsys, data, tmp_path):
    qdir, out = tmp_path / "q", tmp_path / "out"
    (qdir / "sub").mkdir(parents=True)
    (qdir / "a.txt").write_text("0 5 6\n2 30 20\n")
    np.save(qdir / "sub" / "b.npy", np.array([[1.0, 12.0, 9.0]]))
    code, err = track(capsys, data, data["in"], out, "--points", qdir)
    assert code == 0, err
    code, err = track(capsys, data, data["in"] / "a.mp4", tmp_path / "one", "--points", qdir / "a.txt")
    assert code == 0, err
    assert_same_tracks(out / "a" / "tracks.npz", tmp_path / "one" / "tracks.npz")
    np.testing.assert_array_equal(arrays(out / "sub" / "b" / "tracks.npz")["queries"], [[1, 12, 9]])
    # a changed query file is a changed option
    (qdir / "a.txt").write_text("0 5 7\n")
    code, err = track(capsys, data, data["in"], out, "--points", qdir)
    assert code == 2 and "--points sha256:" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    # a video without a query file fails alone, with its reason
    (qdir / "a.txt").unlink()
    code, err = track(capsys, data, data["in"], tmp_path / "missing", "--points", qdir)
    assert code == 2 and "failed: a: --points" in err and "no query file for video 'a'" in err
    assert (tmp_path / "missing" / "sub" / "b" / "tracks.npz").is_file()
    # one video takes a query file, not a folder of them
    code, err = track(capsys, data, data["in"] / "a.mp4", tmp_path / "x", "--points", qdir)
    assert code == 2 and "QDIR" in err and not (tmp_path / "x").exists()


def test_records_of_an_older_cwm_are_refused_not_redone(capsys, data, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(data["in"], src)
    shutil.rmtree(src / "sub")
    code, err = track(capsys, data, src, out, "--grid", 2)
    assert code == 0, err
    record = out / ".cwm-manifest" / "a.json"
    old = json.loads(record.read_text())
    del old["options"]
    record.write_text(json.dumps(old))
    before = (out / "a" / "tracks.npz").read_bytes()
    code, err = track(capsys, data, src, out, "--grid", 2)
    assert code == 2 and "older cwm" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (out / "a" / "tracks.npz").read_bytes() == before


def test_another_command_into_the_same_folder_is_refused(capsys, data, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(data["in"], src)
    shutil.rmtree(src / "sub")
    assert track(capsys, data, src, out, "--grid", 2)[0] == 0
    code = main(["flow", str(src), "-o", str(out), "--weights", str(data["weights"]), "--device", "cpu", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "`cwm track`" in err and "`cwm flow`" in err


def test_two_accelerate_processes_split_the_videos_with_the_same_tracks(capsys, data, tmp_path):
    import subprocess
    import sys

    from test_folders import env

    one, two = tmp_path / "one", tmp_path / "two"
    assert track(capsys, data, data["in"], one, "--grid", 2)[0] == 0
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "cwm",
                           "track", str(data["in"]), "-o", str(two), "--weights", str(data["weights"]),
                           "--device", "cpu", "--mode", "direct", "-q", "--grid", "2"],
                          capture_output=True, text=True, env=env(), timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 done, 0 skipped, 0 failed of 2 videos" in proc.stderr and "2 processes" in proc.stderr
    rows = json.loads((two / "manifest.json").read_text())["videos"]
    assert len({r["pid"] for r in rows}) == 2
    for name in ("a", "sub/b"):
        assert_same_tracks(one / name / "tracks.npz", two / name / "tracks.npz")
