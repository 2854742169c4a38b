"""Video tracking (direct, chained, cfg) on analytic oracles whose tracks are exactly known."""
import numpy as np
import pytest

from cwm.errors import ConfigError, InputError
from cwm.framesource import FrameSource, open_frames
from probes.flow import track
from probes.oracles import WarpOracle, texture
from probes.pair_trackers import flow_pair_tracker, sample_field, zero_pair_tracker
from probes.tracking import check_queries, track_video

SIZE = (64, 64)
#: Per-frame global translation (integer or half pixels: the oracle probe reads those exactly).
STEPS = np.array([(0, 0), (2, -1), (1, 1), (-1, 2), (2, 0), (1.5, -0.5), (2, 1), (0, -1)])


def offsets(steps=STEPS):
    return np.cumsum(steps, axis=0)                          # frame t is frame 0 moved by d_t


def oracle_video(steps=STEPS, occluders=None, max_flow=24):
    """Distinct frames (one texture each) and a pair tracker that knows the motion between any
    two of them: the CWM probe (probes.flow.track) run on a WarpOracle of that translation.
    ``occluders``: {frame: bool [H, W]} pixels of that frame covered by something else."""
    frames = np.stack([texture(SIZE, seed=t) for t in range(len(steps))])
    index = {f.tobytes(): t for t, f in enumerate(frames)}
    d = offsets(steps)
    calls = []

    def pair(frame_a, frame_b, points):
        a, b = index[frame_a.tobytes()], index[frame_b.tobytes()]
        calls.append((a, b, len(points)))
        shift = d[b] - d[a]
        oracle = WarpOracle(np.tile(-shift, (*SIZE, 1)), (occluders or {}).get(b))
        result = track(oracle, frame_a, frame_b, np.clip(points, 0, 63), max_flow=max_flow)
        return result.tracks, result.visible

    return frames, pair, calls


def exact(queries, steps=STEPS):
    d = offsets(steps)
    t = queries[:, 0].astype(int)
    return queries[:, None, 1:] + d[None] - d[t][:, None]


QUERIES = np.array([(0, 20, 20), (0, 40.5, 33), (3, 30, 40), (7, 25, 12), (5, 44, 28)], float)


@pytest.mark.parametrize("mode", ["direct", "chained", "cfg"])
def test_modes_are_exact_on_a_known_translation(mode):
    frames, pair, calls = oracle_video()
    result = track_video(pair, frames, QUERIES, mode=mode, gap=3)
    assert result.tracks.shape == (5, 8, 2) and result.occluded.shape == (5, 8)
    np.testing.assert_allclose(result.tracks, exact(QUERIES), atol=1e-3)
    assert not result.occluded.any()
    pairs = {(a, b) for a, b, _ in calls}
    if mode == "chained":
        assert all(abs(a - b) == 1 for a, b in pairs)
    elif mode == "cfg":
        assert all(1 <= abs(a - b) <= 3 for a, b in pairs) and any(abs(a - b) == 3 for a, b in pairs)
    else:
        assert {a for a, _ in pairs} == {0, 3, 5, 7}          # always from a query frame


def test_points_leaving_the_frame_are_occluded_then_move_with_their_neighbours():
    steps = np.array([(0, 0)] + [(3, 0)] * 7, float)          # everything drifts right 3 px/frame
    frames, pair, _ = oracle_video(steps)
    queries = np.array([(0, 50, 20), (0, 10, 20), (0, 20, 40), (0, 14, 30)], float)
    truth = exact(queries, steps)
    gone = truth[..., 0] >= 63.5
    for mode in ("direct", "chained", "cfg"):
        result = track_video(pair, frames, queries, mode=mode, gap=2)
        np.testing.assert_array_equal(result.occluded, gone, err_msg=mode)
        np.testing.assert_allclose(result.tracks[~gone], truth[~gone], atol=1e-3, err_msg=mode)
    chained = track_video(pair, frames, queries, mode="chained")
    # Lost at frame 5 (x = 65): from then on it moves with the others, 3 px a frame.
    np.testing.assert_allclose(np.diff(chained.tracks[0, 5:, 0]), 3.0, atol=1e-3)


def test_a_hidden_point_is_re_detected_when_it_reappears():
    steps = np.array([(0, 0)] + [(1, 0)] * 7, float)
    box = np.zeros(SIZE, bool)
    box[14:27, 23:25] = True                              # covers (20 + t, 20) at t = 3 and 4 only
    frames, pair, _ = oracle_video(steps, {3: box, 4: box}, max_flow=12)
    queries = np.array([(0, 20, 20), (0, 20, 45), (0, 40, 40), (0, 10, 50)], float)
    truth = exact(queries, steps)
    hidden = np.zeros((4, 8), bool)
    hidden[0, 3:5] = True
    for mode, extra in (("direct", {}), ("chained", {"redetect": 1}), ("cfg", {"gap": 3, "redetect": 1})):
        result = track_video(pair, frames, queries, mode=mode, **extra)
        np.testing.assert_array_equal(result.occluded, hidden, err_msg=mode)
        np.testing.assert_allclose(result.tracks[~hidden], truth[~hidden], atol=1e-3, err_msg=mode)
        # While hidden, it moves with its neighbours (1 px a frame) in the composed modes.
        if mode != "direct":
            np.testing.assert_allclose(result.tracks[0, 4, 0] - result.tracks[0, 3, 0], 1.0, atol=1e-3)
    # Re-detection every 3 frames from the query (frame 0): seen again at frame 6, not 5.
    late = track_video(pair, frames, queries, mode="chained", redetect=3)
    assert late.occluded[0].tolist() == [False, False, False, True, True, True, False, False]


def test_backward_false_reports_the_query_before_its_frame():
    frames, pair, _ = oracle_video()
    q = np.array([(4, 30, 30)], float)
    result = track_video(pair, frames, q, mode="chained", backward=False)
    assert result.occluded[0, :4].all() and not result.occluded[0, 4:].any()
    np.testing.assert_array_equal(result.tracks[0, :4], np.tile([30, 30], (4, 1)))
    np.testing.assert_allclose(result.tracks[0, 4:], exact(q)[0, 4:], atol=1e-3)


def test_frames_folder_and_flat_memory(tmp_path):
    from cwm.io import write_image

    frames = np.stack([texture((32, 48), seed=t) for t in range(12)])
    for t, f in enumerate(frames):
        write_image(tmp_path / f"f{t}.png", f)                  # natural order: f2 before f10
    source = open_frames(tmp_path, window=3)
    assert len(source) == 12 and source.size == (32, 48)
    np.testing.assert_array_equal(source[10], frames[10])
    seen = []

    def pair(a, b, points):
        seen.append(len(source._cache))
        return zero_pair_tracker()(a, b, points)

    result = track_video(pair, source, [(0, 5, 5), (11, 40, 20)], mode="chained")
    assert max(seen) <= 3
    np.testing.assert_array_equal(result.tracks[0], np.tile([5, 5], (12, 1)))
    source.close()


def test_video_file_source(tmp_path):
    from cwm.io import write_video

    frames = np.stack([texture((32, 32), seed=t) for t in range(6)])
    path = tmp_path / "clip.mp4"
    write_video(path, frames, fps=5)
    result = track_video(zero_pair_tracker(), path, [(2, 10, 10)], mode="direct")
    assert result.tracks.shape == (1, 6, 2) and not result.occluded.any()


def test_dense_flow_pair_tracker_follows_a_shift():
    frames, _, _ = oracle_video()
    moved, visible = flow_pair_tracker(lambda a, b: np.full((*a.shape[:2], 2), (2.0, -1.0)),
                                       occlusion=False)(frames[0], frames[1], np.array([[10.0, 10.0], [63.0, 5.0]]))
    np.testing.assert_array_equal(moved, [[12, 9], [65, 4]])
    np.testing.assert_array_equal(visible, [True, False])
    field = np.arange(12, dtype=float).reshape(3, 4, 1)
    np.testing.assert_allclose(sample_field(field, np.array([[1.5, 0.5], [3, 2]])), [[3.5], [11]])


def test_track_result_save_and_draw(tmp_path):
    frames, pair, _ = oracle_video()
    result = track_video(zero_pair_tracker(), frames, QUERIES, mode="direct")
    result.save(tmp_path / "t.npz")
    saved = np.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(saved["tracks"], result.tracks)
    assert str(saved["mode"]) == "direct"
    drawn = result.draw(frames[4], 4)
    assert drawn.shape == frames[4].shape and (drawn != frames[4]).any()


def test_bad_queries_and_options():
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(InputError, match="frame 4"):
        check_queries([(4, 1, 1)], 4, (16, 16))
    with pytest.raises(InputError, match="outside"):
        check_queries([(0, 16, 1)], 4, (16, 16))
    with pytest.raises(InputError, match=r"\[N, 3\]"):
        check_queries([(0, 1)], 4, (16, 16))
    with pytest.raises(ConfigError, match="mode"):
        track_video(zero_pair_tracker(), frames, [(0, 1, 1)], mode="teleport")
    with pytest.raises(InputError, match="2 frames"):
        open_frames(frames[:1])
    with pytest.raises(InputError, match="uint8"):
        FrameSource(frames.astype(np.float32))


def test_predictor_track_dispatches_on_its_arguments():
    import cwm

    predictor = cwm.load("default", device="cpu")
    frames = np.stack([texture((64, 64), seed=t) for t in range(3)])
    video = predictor.track(frames, [(0, 20, 20), (2, 30.5, 40)], mode="cfg", gap=2)
    assert video.tracks.shape == (2, 3, 2) and video.occluded.shape == (2, 3)
    np.testing.assert_array_equal(video.tracks[1, 2], [30.5, 40])
    pair = predictor.track(frames[0], frames[1], [(3, 4)])    # the two-frame form is unchanged
    assert pair.tracks.shape == (1, 2)
    with pytest.raises(InputError, match="need the points"):
        predictor.track(frames[0], frames[1])
