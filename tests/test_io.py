"""cwm.io: image modes, atomic writes, video backends and the bad inputs users hand us."""
from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import cwm.video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bad_input_corpus import _encode  # noqa: E402  (PyAV encoding straight to a file or bytes)
from cwm.errors import ConfigError, InputError, OutputExistsError
from cwm.io import (atomic_write, is_image_path, is_video_path, load_frame_pair, open_video,
                    read_image, write_image, write_video)

BACKENDS = [pytest.param(b, marks=pytest.mark.skipif(
    importlib.util.find_spec(m) is None, reason=f"{m} not installed"))
    for b, m in [("decord", "decord"), ("pyav", "av"), ("opencv", "cv2")]]


def _id_frame(i: int, size: int = 32) -> np.ndarray:
    """A frame whose index survives lossy coding: two flat halves encode i // 16 and i % 16."""
    f = np.empty((size, size, 3), np.uint8)
    f[:, : size // 2], f[:, size // 2:] = 20 + 12 * (i // 16), 15 * (i % 16)
    return f


def _frame_id(f: np.ndarray) -> int:
    s = f.shape[1] // 2
    hi, lo = f[4:-4, 2:s - 2].mean(), f[4:-4, s + 2:-2].mean()
    return int(round((hi - 20) / 12)) * 16 + int(round(lo / 15))


def _unreadable(path: Path, monkeypatch) -> None:
    """Make ``path`` unreadable; root ignores file modes, so then fake the open() call."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real = open

    def fake_open(p, *args, **kwargs):
        if Path(p) == path:
            raise PermissionError(13, "Permission denied", str(p))
        return real(p, *args, **kwargs)

    monkeypatch.setattr(cwm.video, "open", fake_open, raising=False)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """12 frames 32x32 at 10 fps, frame i encoded by _id_frame."""
    path = tmp_path_factory.mktemp("v") / "clip.mp4"
    assert write_video(path, (_id_frame(i) for i in range(12)), fps=10) == 12
    return path


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
def test_png_round_trip_is_exact(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    write_image(tmp_path / "a.png", img)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (17, 23, 3) and np.array_equal(out, img)
    assert out.flags.writeable and out.flags.c_contiguous
    write_image(tmp_path / "a.jpg", img)
    assert read_image(tmp_path / "a.jpg").shape == (17, 23, 3)


def test_image_modes_follow_the_policy(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    gray = rng.integers(0, 256, (6, 7), dtype=np.uint8)
    g16 = rng.integers(0, 65536, (6, 7), dtype=np.uint16)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    Image.fromarray(g16).save(tmp_path / "g16.png")  # mode I;16
    pal = Image.fromarray(rgba[..., :3], "RGB").quantize(8)
    pal.save(tmp_path / "pal.png")

    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgba[..., :3])  # alpha dropped
    assert np.array_equal(read_image(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, 2))
    assert np.array_equal(read_image(tmp_path / "g16.png")[..., 1], (g16 >> 8).astype(np.uint8))
    assert np.array_equal(read_image(tmp_path / "pal.png"), np.asarray(pal.convert("RGB")))


def test_16bit_rgb_png_keeps_rgb_order(tmp_path):
    import cv2

    rgb16 = np.zeros((4, 5, 3), np.uint16)
    rgb16[..., 0] = 65535  # pure red
    rgb16[..., 2] = 257 * 40
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[..., ::-1])  # cv2 takes BGR
    out = read_image(tmp_path / "rgb16.png")
    assert out.dtype == np.uint8 and (out[..., 0] == 255).all() and (out[..., 2] == 40).all()


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (0, 128, 0)).save(tmp_path / "r.jpg", exif=exif)
    assert read_image(tmp_path / "r.jpg").shape == (40, 20, 3)


def test_max_side_shrinks_keeping_aspect(tmp_path):
    img = np.random.default_rng(2).integers(0, 256, (300, 120, 3), dtype=np.uint8)
    write_image(tmp_path / "big.png", img)
    write_image(tmp_path / "big.jpg", img)
    assert read_image(tmp_path / "big.png", max_side=100).shape == (100, 40, 3)
    assert max(read_image(tmp_path / "big.jpg", max_side=100).shape) == 100
    assert read_image(tmp_path / "big.png", max_side=1000).shape == (300, 120, 3)
    with pytest.raises(ConfigError):
        read_image(tmp_path / "big.png", max_side=0)


def test_bad_images_raise_input_error_naming_the_file(tmp_path, monkeypatch):
    noise = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    write_image(tmp_path / "ok.png", noise)  # big enough that a cut lands inside the pixels
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(os.urandom(300))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "locked.png").write_bytes(data)
    _unreadable(tmp_path / "locked.png", monkeypatch)
    reasons = {"missing.png": "no such file", "folder.png": "folder", "empty.png": "empty",
               "junk.png": "not a recognised image", "cut.png": "undecodable",
               "locked.png": "permission denied"}
    for name, reason in reasons.items():
        with pytest.raises(InputError) as e:
            read_image(tmp_path / name)
        msg = str(e.value)
        assert name in msg and reason in msg and "\n" not in msg, msg


def test_write_image_rejects_bad_arrays_and_extensions(tmp_path):
    with pytest.raises(InputError, match="uint8"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match=r"\[4, 4, 4\]"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="extension"):
        write_image(tmp_path / "f.gifx", np.zeros((4, 4, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_path_predicates():
    assert is_video_path("a/B.MP4") and is_video_path("x.webm") and not is_video_path("x.png")
    assert is_image_path("a.JPeG") and is_image_path("t.tiff") and not is_image_path("v.mkv")


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_leaves_nothing_behind_on_exception(tmp_path, exc):
    with pytest.raises(exc):
        with atomic_write(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise exc()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_refuses_to_overwrite(tmp_path):
    target = tmp_path / "sub" / "out.png"
    write_image(target, np.zeros((4, 4, 3), np.uint8))  # creates the missing folder
    with pytest.raises(OutputExistsError, match="exists; pass overwrite=True to replace it"):
        write_image(target, np.full((4, 4, 3), 255, np.uint8))
    assert read_image(target).max() == 0
    write_image(target, np.full((4, 4, 3), 255, np.uint8), overwrite=True)
    assert read_image(target).min() == 255
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]


def test_failed_video_write_leaves_nothing(tmp_path):
    def frames():
        yield np.zeros((16, 16, 3), np.uint8)
        yield np.zeros((16, 18, 3), np.uint8)  # size changes: an error

    with pytest.raises(InputError, match="frame 1 is 18x16"):
        write_video(tmp_path / "v.mp4", frames(), fps=5)
    with pytest.raises(InputError, match="no frames"):
        write_video(tmp_path / "v.mp4", [], fps=5)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_backends_agree_on_frames(clip, backend):
    with open_video(clip, backends=[backend]) as v:
        assert v.backend == backend and v.num_frames == 12 and v.size == (32, 32)
        assert v.fps == pytest.approx(10)
        got = v.get([7, 0, 7, 11])
        assert got.dtype == np.uint8 and got.shape == (4, 32, 32, 3)
        assert [_frame_id(f) for f in got] == [7, 0, 7, 11]
        assert [_frame_id(f) for f in v.iter_frames(step=3, start=1)] == [1, 4, 7, 10]
        assert [_frame_id(f) for f in v.iter_frames(step=2, max_frames=2)] == [0, 2]
        with pytest.raises(InputError, match="frame 12 .*12 frames"):
            v.get([12])


@pytest.mark.parametrize("backend", BACKENDS)
def test_frames_are_rgb_not_bgr(tmp_path, backend):
    # 48 px wide on purpose: decord 0.6 returns malformed arrays at this width, so the
    # decord case also checks that such frames are refused (open_video falls back).
    f = np.zeros((32, 48, 3), np.uint8)
    f[:, :24, 0] = 255  # left red
    f[:, 24:, 2] = 255  # right blue
    write_video(tmp_path / "rb.mp4", [f] * 3, fps=5)
    try:
        v = open_video(tmp_path / "rb.mp4", backends=[backend])
    except InputError as e:
        assert backend == "decord" and "malformed frame" in str(e)
        v = open_video(tmp_path / "rb.mp4")
        assert v.backend == "pyav"
    with v:
        g = v.get([1])[0].astype(int)
    left, right = g[4:-4, 2:20].mean((0, 1)), g[4:-4, 28:-2].mean((0, 1))
    assert left[0] > 200 and left[1] < 50 and left[2] < 50
    assert right[2] > 200 and right[0] < 50


@pytest.mark.parametrize("backend", ["pyav", "opencv"])
def test_long_jumps_seek_to_the_right_frame(tmp_path, backend):
    path = tmp_path / "long.mp4"
    write_video(path, (_id_frame(i) for i in range(300)), fps=30)
    with open_video(path, backends=[backend]) as v:
        assert [_frame_id(f) for f in v.get([290, 3, 150])] == [290, 3, 150]
        assert [_frame_id(f) for f in v.get([10, 299])] == [10, 299]


@pytest.mark.parametrize("ext", [".mkv", ".webm", ".avi", ".mov"])
def test_other_containers_round_trip(tmp_path, ext):
    try:
        n = write_video(tmp_path / f"c{ext}", (_id_frame(i) for i in range(6)), fps=12)
    except InputError as e:  # webm: VP8/VP9 encoders break if decord was imported before av
        if "no working encoder" in str(e):
            pytest.skip(str(e))
        raise
    with open_video(tmp_path / f"c{ext}") as v:
        assert v.num_frames == n == 6
        assert [_frame_id(f) for f in v.iter_frames()] == list(range(6))
        if ext == ".avi":
            assert v.backend != "decord"  # decord mis-seeks in AVI


def test_opencv_writer_fallback_and_odd_sizes(tmp_path, monkeypatch):
    odd = np.zeros((15, 21, 3), np.uint8)
    write_video(tmp_path / "odd.mp4", [odd] * 2, fps=5)  # H.264: padded to even
    with open_video(tmp_path / "odd.mp4") as v:
        assert v.size == (16, 22) and v.num_frames == 2
    import cwm.io

    monkeypatch.setattr(cwm.io, "_pyav_has_encoder", lambda codec: False)
    assert write_video(tmp_path / "cv.mp4", (_id_frame(i) for i in range(4)), fps=5) == 4
    with open_video(tmp_path / "cv.mp4") as v:
        assert [_frame_id(f) for f in v.get([0, 3])] == [0, 3]
    av = pytest.importorskip("av")
    with av.open(str(tmp_path / "cv.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"  # OpenCV's mp4v


def test_av1_is_read_by_some_backend(tmp_path):
    av = pytest.importorskip("av")
    encoders = [c for c in ("libsvtav1", "libaom-av1", "librav1e")
                if _can_encode(av, c)]
    if not encoders:
        pytest.skip("PyAV has no AV1 encoder (libsvtav1, libaom-av1, librav1e) here")
    path = tmp_path / "av1.mp4"
    _encode(path, encoders[0], [_id_frame(i, size=64) for i in range(5)])
    with open_video(path) as v:
        assert v.num_frames == 5
        assert [_frame_id(f) for f in v.get([4, 1])] == [4, 1]


def test_frames_that_change_size_are_resized_to_the_first(tmp_path):
    pytest.importorskip("av")
    big, small = np.full((48, 64, 3), 200, np.uint8), np.full((32, 40, 3), 60, np.uint8)
    data = (_encode(None, "libx264", [big] * 3, fmt="mpegts")
            + _encode(None, "libx264", [small] * 3, fmt="mpegts"))
    (tmp_path / "sizes.ts").write_bytes(data)  # MPEG-TS segments concatenate
    with open_video(tmp_path / "sizes.ts", backends=["pyav"]) as v:
        frames = v.get(range(6))
    assert frames.shape == (6, 48, 64, 3)
    assert abs(frames[0].mean() - 200) < 5 and abs(frames[5].mean() - 60) < 5


def test_truncated_stream_reports_where_it_ends(tmp_path):
    path = tmp_path / "full.mp4"
    write_video(path, (_id_frame(i) for i in range(300)), fps=30)  # faststart: index first
    data = path.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    with open_video(tmp_path / "cut.mp4", backends=["pyav"]) as v:
        assert v.num_frames == 300  # what the index claims
        with pytest.raises(InputError, match="cut.mp4.*stream ends after"):
            v.get([299])
        n = sum(1 for _ in v.iter_frames())
        assert 0 < n < 300 and v.num_frames == n
    with open_video(tmp_path / "cut.mp4", backends=["pyav"]) as v:  # streaming stops quietly too
        got = [(i, _frame_id(f)) for i, f in v.iter_indices([0, 5, n - 1, n, 299])]
        assert got == [(0, 0), (5, 5), (n - 1, n - 1)]
        with pytest.raises(ConfigError, match="ascending"):
            list(v.iter_indices([5, 0]))


def test_bad_videos_raise_input_error_naming_the_file(tmp_path, monkeypatch, clip):
    data = clip.read_bytes()
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(os.urandom(4000))
    (tmp_path / "head.mp4").write_bytes(data[:300])
    (tmp_path / "dir.mp4").mkdir()
    (tmp_path / "locked.mp4").write_bytes(data)
    _unreadable(tmp_path / "locked.mp4", monkeypatch)
    reasons = {"missing.mp4": "no such file", "dir.mp4": "folder", "empty.mp4": "empty",
               "junk.mp4": "tried decord", "head.mp4": "no decodable frames",
               "locked.mp4": "permission denied"}
    for name, reason in reasons.items():
        with pytest.raises(InputError) as e:
            open_video(tmp_path / name)
        msg = str(e.value)
        assert name in msg and reason in msg and "\n" not in msg, msg
    assert "pyav:" in str(pytest.raises(InputError, open_video, tmp_path / "junk.mp4").value)
    with pytest.raises(ConfigError, match="unknown video backend"):
        open_video(clip, backends=["ffmpeg"])


def test_min_frames_and_frame_pairs(tmp_path, clip):
    write_video(tmp_path / "one.mp4", [_id_frame(3)], fps=5)
    with pytest.raises(InputError, match="one.mp4.*1 frame.*at least 2"):
        open_video(tmp_path / "one.mp4", min_frames=2)
    with pytest.raises(InputError, match="one.mp4"):
        load_frame_pair(tmp_path / "one.mp4")
    f0, f1 = load_frame_pair(clip, gap=5)
    assert (_frame_id(f0), _frame_id(f1)) == (0, 5) and f0.shape == (32, 32, 3)

    write_image(tmp_path / "a.png", np.zeros((48, 64, 3), np.uint8))
    write_image(tmp_path / "b.png", np.ones((48, 64, 3), np.uint8))
    write_image(tmp_path / "c.png", np.zeros((50, 64, 3), np.uint8))
    f0, f1 = load_frame_pair(tmp_path / "a.png", tmp_path / "b.png")
    assert f0.max() == 0 and f1.min() == 1
    with pytest.raises(InputError, match=r"sizes differ: .*a\.png is 64x48, .*c\.png is 64x50"):
        load_frame_pair(tmp_path / "a.png", tmp_path / "c.png")
    with pytest.raises(InputError, match="need two frames"):
        load_frame_pair(tmp_path / "a.png")


def _can_encode(av, codec: str) -> bool:
    try:
        av.codec.Codec(codec, "w")
        return True
    except Exception:
        return False


def test_decompression_bomb_limits(tmp_path, monkeypatch):
    # PIL warns above MAX_IMAGE_PIXELS and refuses above twice that. Lowered here so that tiny
    # images stand for the 89M..179M px band: read silently there (one-line rule), refused above.
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    write_image(tmp_path / "band.png", np.zeros((30, 50, 3), np.uint8))  # 1500 px: warning band
    write_image(tmp_path / "over.png", np.zeros((50, 50, 3), np.uint8))  # 2500 px: over the limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_image(tmp_path / "band.png", max_side=16).shape == (10, 16, 3)
    with pytest.raises(InputError, match="too many pixels"):
        read_image(tmp_path / "over.png")
