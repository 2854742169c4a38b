"""Stereo depth by ordinal point pairs (ZWM's protocol) on synthetic stereo scenes."""
import json

import numpy as np
import pytest

from cwm.cli.main import main
from cwm.errors import InputError
from cwm.io import write_image
from cwm.stereodepth import evaluate, grade_pair, read_stereo_dataset, summarise
from cwm.synthetic import make_scene


def test_grading_by_hand():
    assert grade_pair(np.array([2.0, 4.0]), np.array([6.0, 3.0])) == (True, 1.0)   # d1_hat = 2*6/3 = 4
    correct, ratio = grade_pair(np.array([2.0, 4.0]), np.array([3.0, 3.0]))       # tie: "1 nearer"
    assert not correct and ratio == pytest.approx(0.5)
    assert grade_pair(np.array([4.0, 2.0]), np.array([0.0, 1.0])) == (True, 0.0)
    s = summarise([True, True, False, True], [1, 1, 0, 0.5])
    assert s["pairs"] == 4 and s["accuracy"] == 75 and s["sem"] == pytest.approx(100 * np.sqrt(0.75 * 0.25 / 4))
    assert s["ratio_mean"] == pytest.approx(0.625) and s["ci95"][0] <= 75 <= s["ci95"][1]


def make_set(folder, scenes=3, pairs_per_scene=4, **edit):
    """ZWM layout from stereo scenes: target = query, ground-truth depth of each point."""
    frames = folder / "frames"
    frames.mkdir(parents=True)
    entries = []
    rng = np.random.default_rng(0)
    for s in range(scenes):
        scene = make_scene(s, (48, 64), preset="stereo")
        write_image(frames / f"s{s}_left.png", scene.frames[0])
        write_image(frames / f"s{s}_right.png", scene.frames[1])
        h, w = scene.size
        ok = ~scene.occlusion[0]
        ys, xs = np.nonzero(ok)
        for k in range(pairs_per_scene):
            while True:
                i, j = rng.integers(0, len(xs), 2)
                d0, d1 = scene.depth[0][ys[i], xs[i]], scene.depth[0][ys[j], xs[j]]
                if max(d0, d1) / min(d0, d1) > 1.1:
                    break
            for n, idx in enumerate((i, j)):
                x, y = (xs[idx] + 0.5) / w, (ys[idx] + 0.5) / h
                entries.append({"uid": f"s{s}_{k}_point{n}", "dataset_name": "synthetic" if s else "other",
                                "depth": float(scene.depth[0][ys[idx], xs[idx]]),
                                "query_frame_file": f"s{s}_left.png", "target_frame_file": f"s{s}_right.png",
                                "query_x_raster": x, "query_y_raster": y, "target_x_raster": x, "target_y_raster": y})
    for key, value in edit.items():
        entries[0][key] = value
    (folder / "dataset.json").write_text(json.dumps(entries))
    return entries


def test_exact_disparity_orders_every_pair(tmp_path):
    make_set(tmp_path)
    pairs, unpaired = read_stereo_dataset(tmp_path)
    assert len(pairs) == 12 and unpaired == 0
    scenes = {s: make_scene(s, (48, 64), preset="stereo") for s in range(3)}

    def oracle(query, target, points):            # the scene's exact flow at the points
        s = next(k for k, sc in scenes.items() if np.array_equal(sc.frames[0], query))
        px, py = np.rint(points).astype(int).T
        return points + scenes[s].flow[0][py, px]

    report = evaluate(pairs, {"oracle": oracle, "zero": lambda q, t, p: p})
    assert report["methods"]["oracle"]["overall"]["accuracy"] == 100.0
    assert report["methods"]["oracle"]["overall"]["ratio_mean"] == pytest.approx(1.0, abs=1e-5)
    assert set(report["methods"]["oracle"]) == {"other", "overall", "synthetic"}
    # Zero motion: every EPE is 0, a tie, so correct exactly when point 1 is nearer.
    truth = np.mean([p.depth[1] < p.depth[0] for p in pairs]) * 100
    assert report["methods"]["zero"]["overall"]["accuracy"] == pytest.approx(truth)


def test_cli_scores_cwm_and_dis(capsys, tmp_path):
    make_set(tmp_path / "d", scenes=1, pairs_per_scene=3)
    out_json = tmp_path / "r.json"
    code = main(["eval", "stereo-depth", "--data", str(tmp_path / "d"), "--out", str(out_json), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert set(report["methods"]) == {"cwm", "dis"} and report["methods"]["dis"]["overall"]["pairs"] == 3
    assert "acc %" in out


@pytest.mark.parametrize("edit, message", [({"depth": -1.0}, "depth must be > 0"),
                                           ({"query_x_raster": 1.5}, "outside the frame"),
                                           ({"query_frame_file": "nope.png"}, "not found"),
                                           ({"uid": "lonely"}, None)])
def test_bad_entries(capsys, tmp_path, edit, message):
    make_set(tmp_path / "d", scenes=1, pairs_per_scene=1, **edit)
    if message is None:                          # its partner is left alone: no complete pair
        with pytest.raises(InputError, match="no complete"):
            read_stereo_dataset(tmp_path / "d")
        return
    code = main(["eval", "stereo-depth", "--data", str(tmp_path / "d"), "--methods", "dis",
                 "--out", str(tmp_path / "r.json")])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()


def test_malformed_json(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_stereo_dataset(tmp_path)
