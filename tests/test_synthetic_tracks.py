"""Exact tracks of synthetic scenes, against the renderer's exact flow and occlusion."""
import pickle

import numpy as np
import pytest

from cwm.errors import InputError
from cwm.flowio import read_tapvid
from cwm.synthetic import make_scene
from cwm.synthetic.tracks import TAPVID_OVERRIDES, make_tapvid_set, scene_tracks, tapvid_entry


@pytest.mark.parametrize("preset", ["default", "objects", "roll_zoom", "parts"])
def test_one_step_of_a_track_is_the_scenes_flow_and_occlusion(preset):
    scene = make_scene(3, (48, 64), num_frames=4, preset=preset)
    h, w = scene.size
    ys, xs = np.mgrid[0:h, 0:w]
    xy = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    for t in range(scene.num_frames - 1):
        tracks, occluded = scene_tracks(scene, np.full(len(xy), t), xy)
        assert not occluded[:, t].any()                                  # visible at its query
        np.testing.assert_array_equal(tracks[:, t], xy)
        step = (tracks[:, t + 1] - xy).reshape(h, w, 2)
        np.testing.assert_allclose(step, scene.flow[t], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(occluded[:, t + 1].reshape(h, w), scene.occlusion[t])


def test_tracks_compose_over_many_frames_and_are_reversible():
    scene = make_scene(5, (64, 64), num_frames=8, **TAPVID_OVERRIDES)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 63, (50, 2))
    tracks, occ = scene_tracks(scene, np.zeros(50, int), xy)
    # Re-query every visible point at frame 5: the track from there goes back to the original one.
    vis = ~occ[:, 5]
    again, _ = scene_tracks(scene, np.full(vis.sum(), 5), tracks[vis, 5])
    np.testing.assert_allclose(again, tracks[vis], rtol=0, atol=1e-9)
    assert (tracks[:, 0] == xy).all() and 0 < occ.sum() < occ.size


def test_visible_points_show_the_same_colour():
    scene = make_scene(1, (64, 64), num_frames=6, **TAPVID_OVERRIDES)
    ys, xs = np.mgrid[4:60:3, 4:60:3]
    xy = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    tracks, occ = scene_tracks(scene, np.zeros(len(xy), int), xy)
    f0 = scene.frames[0].astype(float)[ys.ravel(), xs.ravel()]
    last = scene.num_frames - 1
    inside = ~occ[:, last] & (tracks[:, last] > 1).all(1) & (tracks[:, last] < 62).all(1)
    px, py = np.rint(tracks[inside, last]).astype(int).T
    colour = scene.frames[last].astype(float)[py, px]
    # Nearest-pixel colour of a textured surface: close on average, never a different layer.
    assert np.median(np.abs(colour - f0[inside])) < 12


def test_tapvid_set_layout_roundtrips_through_the_reader(tmp_path):
    data = make_tapvid_set(2, size=(32, 40), num_frames=5, num_points=10)
    assert list(data) == ["synthetic_0000", "synthetic_0001"]
    entry = data["synthetic_0000"]
    assert entry["video"].shape == (5, 32, 40, 3) and entry["video"].dtype == np.uint8
    assert entry["points"].shape == (10, 5, 2) and entry["occluded"].shape == (10, 5)
    assert (entry["points"][~entry["occluded"]] >= 0).all() and (entry["points"][~entry["occluded"]] <= 1).all()
    assert (~entry["occluded"]).any(axis=1).all()                  # every track visible somewhere
    path = tmp_path / "set.pkl"
    path.write_bytes(pickle.dumps(data))
    videos = read_tapvid(path)
    assert [v.name for v in videos] == list(data)
    again = make_tapvid_set(2, size=(32, 40), num_frames=5, num_points=10)
    np.testing.assert_array_equal(again["synthetic_0001"]["points"], data["synthetic_0001"]["points"])


def test_entry_converts_to_normalised_coordinates():
    scene = make_scene(0, (20, 10), num_frames=2)
    tracks = np.array([[[-0.5, -0.5], [9.5, 19.5]]])
    entry = tapvid_entry(scene, tracks, np.zeros((1, 2), bool))
    np.testing.assert_array_equal(entry["points"], [[[0, 0], [1, 1]]])


def test_bad_query_frames():
    scene = make_scene(0, (16, 16), num_frames=3)
    with pytest.raises(InputError, match="query_frames"):
        scene_tracks(scene, [3], [[1.0, 1.0]])
