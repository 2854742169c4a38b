"""``cwm eval tapvid`` on a small synthetic TAP-Vid set: the table, the report, bad input."""
import io
import json
import pickle

import numpy as np
import pytest

from cwm.cli.main import main
from cwm.metrics_tapvid import METRIC_KEYS, sample_queries_first, sample_queries_strided, tapvid_metrics
from cwm.synthetic import make_tapvid_set


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    data = make_tapvid_set(3, size=(48, 48), num_frames=6, num_points=12)
    path = tmp_path_factory.mktemp("tapvid") / "synthetic.pkl"
    path.write_bytes(pickle.dumps(data))
    return path, data


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def zero_scores(entry, query_mode):
    """The zero baseline computed directly from the official-layout functions."""
    raster = entry["points"] * 256.0
    sample = (sample_queries_first(entry["occluded"], raster, None) if query_mode == "first"
              else sample_queries_strided(entry["occluded"], raster, None, 5))
    q = sample["query_points"]
    pred = np.repeat(q[..., None, [2, 1]], raster.shape[1], axis=2)       # (x, y) of the query
    return tapvid_metrics(q, sample["occluded"], sample["target_points"],
                          np.zeros_like(sample["occluded"]), pred, query_mode)


@pytest.mark.parametrize("query_mode", ["first", "strided"])
def test_zero_baseline_equals_a_direct_computation(capsys, dataset, tmp_path, query_mode):
    path, data = dataset
    out_json = tmp_path / "report.json"
    code, out, err = run(capsys, "eval", "tapvid", "--data", path, "--query-mode", query_mode,
                         "--methods", "zero", "dis_chained", "--out", out_json, "-q")
    assert code == 0, err
    assert "AJ" in out and "zero" in out and "dis_chained" in out and str(out_json) in out
    report = json.loads(out_json.read_text())
    assert report["query_mode"] == query_mode and report["num_videos"] == 3
    zero = report["methods"]["zero"]
    per_video = {name: zero_scores(entry, query_mode) for name, entry in data.items()}
    for key in METRIC_KEYS:
        for name, scores in per_video.items():
            assert zero["videos"][name][key] == pytest.approx(float(scores[key][0]), abs=1e-12)
        assert zero[key] == pytest.approx(np.mean([s[key][0] for s in per_video.values()]), abs=1e-12)
    dis = report["methods"]["dis_chained"]
    assert dis["average_jaccard"] > zero["average_jaccard"]        # the scenes move


def test_cwm_and_every_baseline_in_one_run(capsys, dataset, tmp_path):
    path, _ = dataset
    out_json = tmp_path / "all.json"
    code, out, err = run(capsys, "eval", "tapvid", "--data", path, "--max-videos", 1, "--out", out_json, "-q")
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert list(report["methods"]) == ["cwm", "zero", "dis_chained", "dis_direct"]
    for m in report["methods"].values():
        assert 0 <= m["average_jaccard"] <= 1 and 0 <= m["occlusion_accuracy"] <= 1
        assert len(m["videos"]) == 1
    assert report["cwm_mode"] == "chained" and report["weights"] == "default"


def test_list_layout_with_encoded_frames(capsys, dataset, tmp_path):
    from PIL import Image

    _, data = dataset
    entry = dict(next(iter(data.values())))
    encoded = []
    for frame in entry["video"]:
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="PNG")
        encoded.append(buf.getvalue())
    entry["video"] = encoded
    path = tmp_path / "kinetics.pkl"
    path.write_bytes(pickle.dumps([entry]))
    code, out, err = run(capsys, "eval", "tapvid", "--data", path, "--methods", "zero", "-q")
    assert code == 0, err
    assert "1 videos" in out


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def _bad_sets(data):
    name, entry = next(iter(data.items()))
    no_key = {name: {k: v for k, v in entry.items() if k != "occluded"}}
    shapes = {name: {**entry, "points": entry["points"][:, :3]}}
    outside = {name: {**entry, "points": entry["points"] + 2.0}}
    video = {name: {**entry, "video": entry["video"].astype(np.float32)}}
    return {"missing key": (pickle.dumps(no_key), "no key 'occluded'"),
            "wrong shape": (pickle.dumps(shapes), "'points' must be"),
            "query outside": (pickle.dumps(outside), "outside the frame"),
            "float video": (pickle.dumps(video), "'video' must be uint8"),
            "malformed": (b"\x80\x04not a pickle at all", "pickle"),
            "code": (pickle.dumps({"v": Evil()}), "not allowed"),
            "not a dataset": (pickle.dumps(42), "expected a dict")}


@pytest.mark.parametrize("case", ["missing key", "wrong shape", "query outside", "float video",
                                  "malformed", "code", "not a dataset"])
def test_bad_input_one_line_no_report(capsys, dataset, tmp_path, case):
    _, data = dataset
    blob, message = _bad_sets(data)[case]
    path = tmp_path / "bad.pkl"
    path.write_bytes(blob)
    out_json = tmp_path / "r.json"
    code, out, err = run(capsys, "eval", "tapvid", "--data", path, "--methods", "zero", "--out", out_json)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert "pwned" not in out and not out_json.exists()
