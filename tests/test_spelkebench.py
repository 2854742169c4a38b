"""SpelkeBench: scores by hand (SpelkeNet's definitions), the .h5 reader and ``cwm eval spelke``."""
import json

import numpy as np
import pytest

from cwm.cli.main import main
from cwm.errors import InputError
from cwm.spelkebench import SPELKE_THRESHOLDS, central_point, evaluate, read_spelkebench, spelke_metrics

h5py = pytest.importorskip("h5py")


def strip(*ranges, width=10):
    """Masks [N, 2, width]: mask i covers columns ranges[i] (inclusive) in both rows."""
    masks = np.zeros((len(ranges), 2, width), bool)
    for i, (a, b) in enumerate(ranges):
        masks[i, :, a:b + 1] = True
    return masks


def test_thresholds_are_the_reference_codes_nine():
    assert len(SPELKE_THRESHOLDS) == 9 and SPELKE_THRESHOLDS[-1] == pytest.approx(0.9)
    assert SPELKE_THRESHOLDS[2] > 0.6                    # 0.6000000000000001, as np.arange makes it


def test_scores_by_hand():
    gt = strip((0, 4), (5, 9))
    pred = strip((0, 2), (5, 9))                         # IoUs 3/5 = 0.6 and 1.0
    m = spelke_metrics(pred, gt)
    # Thresholds .50 and .55 count both; from "0.6" (0.6000000000000001) on only the exact one.
    assert m["ar"] == pytest.approx(11 / 18, abs=1e-15) and m["ap"] == pytest.approx(11 / 18, abs=1e-15)
    assert m["miou"] == pytest.approx(0.8, abs=1e-15)
    assert m["ar_95"] == pytest.approx(13 / 20, abs=1e-15)   # ten thresholds, 0.6 counted at 0.60
    assert m["miou_hungarian"] == pytest.approx(0.8, abs=1e-15)


def test_best_iou_is_not_matched_but_recall_is():
    gt = strip((0, 4), (5, 9))
    pred = strip((0, 9))                                 # one prediction covering both: IoU 0.5 each
    m = spelke_metrics(pred, gt)
    assert m["miou"] == pytest.approx(0.5, abs=1e-15)    # each ground truth's best IoU
    assert m["miou_hungarian"] == pytest.approx(0.25, abs=1e-15)
    assert m["ar"] == pytest.approx(1 / 18, abs=1e-15) and m["ap"] == pytest.approx(1 / 9, abs=1e-15)
    empty = spelke_metrics(np.zeros((0, 2, 10), bool), gt)
    assert empty["ar"] == 0 and empty["ap"] == 0 and empty["miou"] == 0


def test_central_point_of_a_ring_is_inside_it():
    yy, xx = np.mgrid[0:41, 0:41]
    r = np.hypot(yy - 20, xx - 20)
    ring = (r > 10) & (r < 16)
    x, y = central_point(ring)
    assert ring[y, x]
    disk = r < 5
    assert central_point(disk) == (20, 20)


def write_bench(path, with_bad=None):
    yy, xx = np.mgrid[0:64, 0:64]
    with h5py.File(path, "w") as f:
        g = f.create_group("entityseg_1_image1")
        g["rgb"] = np.random.default_rng(0).integers(0, 255, (64, 64, 4), dtype=np.uint8)
        segs = np.stack([np.hypot(yy - 20, xx - 20) < 8, (xx > 40) & (yy > 30)]).astype(np.uint8)
        g["segment"] = segs
        g["centroid"] = np.array([[80.0, 80.0], [200.0, 190.0]])   # (x, y) at 256x256
        h = f.create_group("coco_image2")
        h["rgb"] = np.zeros((256, 256, 3), np.uint8)
        h["segment"] = (np.mgrid[0:256, 0:256][1] < 100)[None].astype(np.uint8)
        if with_bad == "missing":
            del h["segment"]
        elif with_bad == "shape":
            del h["segment"]
            h["segment"] = np.zeros((1, 10, 10), np.uint8)
        elif with_bad == "centroid":
            g["centroid"][0] = (300.0, 1.0)


def test_reader_resizes_and_finds_probe_points(tmp_path):
    write_bench(tmp_path / "b.h5")
    images = read_spelkebench(tmp_path / "b.h5")
    assert [i.name for i in images] == ["coco_image2", "entityseg_1_image1"]     # sorted keys
    coco, entity = images
    assert entity.image.shape == (256, 256, 3) and entity.segments.shape == (2, 256, 256)
    np.testing.assert_array_equal(entity.points, [[80, 80], [200, 190]])
    x, y = coco.points[0]
    assert coco.segments[0, int(y), int(x)]
    perfect = evaluate(images, {"oracle": lambda image, points: next(
        i.segments for i in images if i.image is image)})
    m = perfect["methods"]["oracle"]
    assert m["ar"] == 1 and m["miou"] == 1 and set(m["buckets"]) == {"coco", "entityseg"}


@pytest.mark.parametrize("bad, message", [("missing", "needs datasets"), ("shape", "'segment' must be"),
                                          ("centroid", "outside")])
def test_bad_files_raise_one_line(tmp_path, bad, message):
    write_bench(tmp_path / "b.h5", with_bad=bad)
    with pytest.raises(InputError, match=message):
        read_spelkebench(tmp_path / "b.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="cannot read SpelkeBench"):
        read_spelkebench(tmp_path / "junk.h5")


def test_cli_eval_spelke(capsys, tmp_path):
    write_bench(tmp_path / "b.h5")
    out_json = tmp_path / "s.json"
    code = main(["eval", "spelke", "--data", str(tmp_path / "b.h5"), "--max-images", "1",
                 "--method", "jacobian", "--out", str(out_json), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "SpelkeBench" in out and "miou" in out
    report = json.loads(out_json.read_text())
    cwm = report["methods"]["cwm"]
    assert 0 <= cwm["ar"] <= 1 and 0 <= cwm["miou"] <= 1 and list(cwm["images"]) == ["coco_image2"]
    write_bench(tmp_path / "bad.h5", with_bad="missing")
    code = main(["eval", "spelke", "--data", str(tmp_path / "bad.h5"), "--out", str(tmp_path / "x.json")])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()
