"""``cwm track``: outputs, query files and one-line errors (the embedded model on tiny frames)."""
import numpy as np
import pytest

from cwm.cli.main import main
from cwm.io import write_image
from probes.oracles import texture


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    base = texture((32, 32), seed=0)
    for t in range(3):
        write_image(folder / f"frame_{t}.png", np.roll(base, t, axis=1))
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_track_grid_writes_tracks_and_video(capsys, frames_dir, tmp_path):
    code, out, err = run(capsys, "track", frames_dir, "--grid", 2, "--mode", "cfg", "--gap", 2,
                         "-o", tmp_path / "o", "-q")
    assert code == 0, err
    saved = np.load(tmp_path / "o" / "tracks.npz")
    assert saved["tracks"].shape == (4, 3, 2) and saved["occluded"].shape == (4, 3)
    np.testing.assert_array_equal(saved["queries"][:, 0], 0)
    assert str(saved["mode"]) == "cfg" and int(saved["gap"]) == 2
    assert (tmp_path / "o" / "tracks.mp4").stat().st_size > 0
    assert "tracks.npz" in out


def test_points_file_with_and_without_frames(capsys, frames_dir, tmp_path):
    (tmp_path / "q.txt").write_text("# t x y\n1, 10, 12\n2 20.5 3\n")
    code, _, err = run(capsys, "track", frames_dir, "--points", tmp_path / "q.txt", "--mode", "direct",
                       "-o", tmp_path / "a", "-q")
    assert code == 0, err
    saved = np.load(tmp_path / "a" / "tracks.npz")
    np.testing.assert_array_equal(saved["queries"], [[1, 10, 12], [2, 20.5, 3]])
    np.testing.assert_array_equal(saved["tracks"][0, 1], [10, 12])
    np.save(tmp_path / "q.npy", np.array([[4.0, 5.0]]))
    code, _, err = run(capsys, "track", frames_dir, "--points", tmp_path / "q.npy", "--query-frame", 2,
                       "-o", tmp_path / "b", "-q")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "tracks.npz")["queries"], [[2, 4, 5]])


@pytest.mark.parametrize("points, message", [("1 40 3\n", "outside the 32x32 frame"),
                                              ("7 3 3\n", "frames 0..2"),
                                              ("1 2 3 4\n", "expected rows"),
                                              ("a b\n", "cannot read query points")])
def test_bad_queries_give_one_line_and_no_output(capsys, frames_dir, tmp_path, points, message):
    (tmp_path / "q.txt").write_text(points)
    code, out, err = run(capsys, "track", frames_dir, "--points", tmp_path / "q.txt", "-o", tmp_path / "x")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_missing_input_and_gap_without_cfg(capsys, tmp_path, frames_dir):
    code, _, err = run(capsys, "track", tmp_path / "nothing.mp4", "--grid", 2)
    assert code == 2 and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "track", frames_dir, "--grid", 2, "--gap", 3)
    assert code == 2 and "--gap" in err
