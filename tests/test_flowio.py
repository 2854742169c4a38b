"""Format round trips on tiny files the tests write themselves."""

import os
import pickle

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cwm import flowio
from cwm.errors import InputError


@settings(max_examples=20, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 7), st.just(2)),
              elements=st.floats(-1e4, 1e4, width=32)))
def test_flo_round_trip_is_exact(tmp_path_factory, flow):
    path = tmp_path_factory.mktemp("flo") / "f.flo"
    flowio.write_flo(path, flow)
    back = flowio.read_flo(path)
    assert back.dtype == np.float32 and back.shape == flow.shape
    assert np.array_equal(back, flow)


def test_flo_layout_matches_middlebury(tmp_path):
    flow = np.zeros((2, 3, 2), np.float32)
    flow[0, 1] = (1.5, -2.0)                            # row 0, column 1: (dx, dy)
    path = tmp_path / "a.flo"
    flowio.write_flo(path, flow)
    data = path.read_bytes()
    assert data[:4] == b"PIEH"
    assert np.frombuffer(data[4:12], "<i4").tolist() == [3, 2]        # width, height
    assert np.frombuffer(data[12:], "<f4")[2:4].tolist() == [1.5, -2.0]


def test_flo_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(b"NOPE" + bytes(8))
    with pytest.raises(InputError, match="bad.flo"):
        flowio.read_flo(bad)
    flowio.write_flo(tmp_path / "ok.flo", np.zeros((4, 4, 2), np.float32))
    truncated = tmp_path / "short.flo"
    truncated.write_bytes((tmp_path / "ok.flo").read_bytes()[:-4])
    with pytest.raises(InputError, match="short.flo"):
        flowio.read_flo(truncated)
    with pytest.raises(InputError, match="missing.flo"):
        flowio.read_flo(tmp_path / "missing.flo")


def test_kitti_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    flow = (rng.integers(-300 * 64, 300 * 64, (5, 7, 2)) / 64.0).astype(np.float32)
    valid = rng.random((5, 7)) > 0.3
    path = tmp_path / "000000_10.png"
    flowio.write_kitti_flow(path, flow, valid)
    back, back_valid = flowio.read_kitti_flow(path)
    assert np.array_equal(back_valid, valid)
    assert np.array_equal(back[valid], flow[valid])
    assert np.all(back[~valid] == 0)


def test_kitti_png_channel_layout(tmp_path):
    flow = np.zeros((1, 2, 2), np.float32)
    flow[0, 0] = (1.0, -0.5)
    path = tmp_path / "f.png"
    flowio.write_kitti_flow(path, flow)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]    # to R, G, B
    assert raw.dtype == np.uint16
    assert raw[0, 0].tolist() == [2 ** 15 + 64, 2 ** 15 - 32, 1]   # R = dx, G = dy, B = valid
    with pytest.raises(InputError, match="16-bit"):
        eight_bit = tmp_path / "8bit.png"
        cv2.imwrite(str(eight_bit), np.zeros((2, 2, 3), np.uint8))
        flowio.read_kitti_flow(eight_bit)


def davis_like(num_points=3, num_frames=4, height=6, width=8):
    rng = np.random.default_rng(1)
    occluded = np.zeros((num_points, num_frames), bool)
    occluded[1, :2] = True                              # point 1 appears at frame 2
    occluded[2, :] = True                               # point 2 never visible
    return {
        "video": rng.integers(0, 255, (num_frames, height, width, 3), dtype=np.uint8),
        "points": rng.random((num_points, num_frames, 2)).astype(np.float32),
        "occluded": occluded,
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_tapvid_davis_layout_loads(tmp_path, protocol):
    entry = davis_like()
    path = tmp_path / "tapvid_davis.pkl"
    path.write_bytes(pickle.dumps({"bear": entry, "car": davis_like()}, protocol=protocol))
    videos = flowio.read_tapvid(path)
    assert [v.name for v in videos] == ["bear", "car"]
    v = videos[0]
    assert np.array_equal(v.video, entry["video"])
    assert v.tracks.shape == (3, 4, 2) and v.tracks.dtype == np.float32
    expected = entry["points"] * np.array([8, 6]) - 0.5             # (x, y) pixels
    assert np.allclose(v.tracks, expected)
    assert np.array_equal(v.occluded, entry["occluded"])
    assert v.query_frames.tolist() == [0, 2, -1]
    assert np.allclose(v.query_xy[1], expected[1, 2])


def test_tapvid_list_layout_with_encoded_frames(tmp_path):
    entry = davis_like()
    entry["video"] = [cv2.imencode(".png", frame)[1].tobytes() for frame in entry["video"]]
    path = tmp_path / "0000_of_0010.pkl"
    path.write_bytes(pickle.dumps([entry]))
    (video,) = flowio.read_tapvid(path)
    assert video.name == "0" and video.video.shape == (4, 6, 8, 3)
    assert video.video.dtype == np.uint8


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_tapvid_refuses_arbitrary_globals(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v": {"video": _Evil(), "points": 0, "occluded": 0}}))
    with pytest.raises(InputError, match="not allowed"):
        flowio.read_tapvid(path)


def test_tapvid_bad_structure(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"v": {"video": np.zeros((2, 4, 4, 3), np.uint8)}}))
    with pytest.raises(InputError, match="needs keys"):
        flowio.read_tapvid(path)
    path.write_bytes(pickle.dumps(3))
    with pytest.raises(InputError, match="dict or list"):
        flowio.read_tapvid(path)
