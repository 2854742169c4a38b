"""The bad-input corpus: files and values users hand cwm, written at run time.

:func:`make_corpus` writes every bad input into a folder (nothing binary is committed) and
returns one :class:`Case` per input: the Python API call and the command line to run, and what
must happen. Most inputs must fail with a given :class:`cwm.errors.CWMError` subclass and a
one-line message naming the file and the problem; some must be handled (an AV1 clip through the
decoder fallback, 16-bit and RGBA PNGs, an 8000x8000 image shrunk while reading).
``benchmarks/bad_inputs.py`` runs and counts them; ``tests/test_bad_inputs.py`` asserts them.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cwm.errors import ConfigError, CWMError, InputError, WeightsError

#: The side of the huge test image, and how many uint8 RGB copies of it reading may hold at once.
HUGE_SIDE = 8000
HUGE_COPIES = 4
PAIR = (32, 40)  # (H, W) of the small test images
LONG_FRAMES = 24  # frames of long.mp4, the video that interruption runs interrupt
EMBEDDED = Path(__file__).resolve().parents[1] / "cwm" / "weights" / "default"
KEEP = "keep.txt"  # the file every output folder holds before a run; it must survive untouched


@dataclass
class Case:
    """One bad input and what must happen to it.

    Attributes:
        name: short identifier (also the test id).
        what: one line for the table.
        error: the exception class the API must raise and whose message the CLI must print (exit
            2); None when the input must be handled (success).
        words: fragments the error message must contain: the file's name and the problem.
        api: the Python API call, ``api(out)`` (``out`` a folder it may write into), or None.
        cli: the command line after ``cwm`` (the runner adds ``-o OUT``), or None.
        check: on success, ``check(result)`` asserts the API result is right.
        outputs: on success, files the CLI must have written (relative to OUT).
        warning: on success, a fragment the CLI's stderr must contain.
        unreadable: a file made unreadable for the run (faked when running as root, whom file
            modes do not stop).
        existing: files the output folder holds before the run (besides ``keep.txt``).
        out_is_file: ``-o`` names an existing file instead of a folder.
        sentinel: a file that must not exist after the run (a malicious pickle would create it).
        skip: why this case cannot run here (a missing encoder), or None.
    """

    name: str
    what: str
    error: type[CWMError] | None
    words: tuple[str, ...] = ()
    api: Callable[[Path], Any] | None = None
    cli: list[str] | None = None
    check: Callable[[Any], None] | None = None
    outputs: tuple[str, ...] = ()
    warning: str | None = None
    unreadable: Path | None = None
    existing: dict[str, bytes] = field(default_factory=dict)
    out_is_file: bool = False
    sentinel: Path | None = None
    skip: str | None = None


class _Evil:
    """Pickles to a call of ``exec`` that creates ``sentinel``: what a malicious .pth does."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (exec, (f"open({self.sentinel!r}, 'w').write('code ran')",))


def _predictor():
    """The embedded model on the CPU, loaded once (the API cases that need a model)."""
    global _PREDICTOR
    if _PREDICTOR is None:
        import cwm

        _PREDICTOR = cwm.load("default", device="cpu")
    return _PREDICTOR


_PREDICTOR = None


def _frames(n: int, size: tuple[int, int] = PAIR, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames of a moving synthetic scene with noise (so video files have real content)."""
    from cwm.synthetic import make_scene

    rng = np.random.default_rng(seed)
    scene = make_scene(seed + 3, size, num_frames=n)
    return [np.clip(f.astype(int) + rng.integers(-20, 21, f.shape), 0, 255).astype(np.uint8)
            for f in scene.frames]


def _encode(path: Path | None, codec: str, frames: list[np.ndarray], fmt: str | None = None) -> bytes:
    """Encode ``frames`` with PyAV directly (to ``path``, or to returned bytes when None)."""
    import av

    target = io.BytesIO() if path is None else str(path)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner to stdout unless told not to
    with av.open(target, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=10)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return b"" if path is not None else target.getvalue()


def _av1_encoder() -> str | None:
    try:
        import av
    except ImportError:
        return None
    return next((c for c in ("libsvtav1", "libaom-av1", "librav1e") if c in av.codecs_available), None)


def _write_huge_png(path: Path, side: int = HUGE_SIDE) -> None:
    """A ``side x side`` RGB PNG that compresses well (a few seconds to write, under 1 MB)."""
    from PIL import Image

    a = np.empty((side, side, 3), np.uint8)
    a[..., 0] = (np.arange(side) % 251)[None, :]
    a[..., 1] = (np.arange(side) % 253)[:, None]
    a[..., 2] = 77
    Image.fromarray(a).save(path, compress_level=1)


def _weights_folder(folder: Path, name: str, edit_config=None, edit_weights=None) -> Path:
    """A copy of the embedded weights folder with its config.json or its tensors edited."""
    dest = folder / name
    shutil.copytree(EMBEDDED, dest)
    if edit_config is not None:
        meta = json.loads((dest / "config.json").read_text())
        edit_config(meta)
        (dest / "config.json").write_text(json.dumps(meta))
    if edit_weights is not None:
        edit_weights(dest / "model.safetensors")
    return dest


def _wrong_shape(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(path))
    sd["decoder.head.weight"] = sd["decoder.head.weight"][:-3].clone()
    save_file(sd, str(path))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def make_corpus(folder: str | os.PathLike) -> list[Case]:
    """Write every bad input into ``folder`` and return the cases (see the module notes)."""
    write_inputs(folder)
    return corpus_cases(folder)


def write_inputs(folder: str | os.PathLike) -> None:
    """Write the files of :func:`corpus_cases` into ``folder`` (about 10 s; under 10 MB)."""
    import cv2
    import torch
    from PIL import Image

    from cwm.io import write_image, write_video

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = PAIR
    f0, f1 = _frames(2)
    write_image(d / "f0.png", f0)
    write_image(d / "f1.png", f1)
    write_image(d / "tall.png", np.zeros((h + 8, w, 3), np.uint8))
    write_image(d / "tiny.png", np.zeros((1, 1, 3), np.uint8))
    write_video(d / "clip.mp4", _frames(6), fps=10)
    write_video(d / "long.mp4", _frames(LONG_FRAMES, seed=1), fps=10)
    write_video(d / "one.mp4", _frames(2)[:1], fps=10)
    (d / "empty.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(rng.bytes(4000))
    (d / "truncated.mp4").write_bytes((d / "clip.mp4").read_bytes()[:300])
    long_bytes = (d / "long.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(long_bytes[: len(long_bytes) * 6 // 10])  # index first: faststart
    (d / "folder.mp4").mkdir()
    (d / "folder.png").mkdir()
    (d / "junk.png").write_bytes(rng.bytes(500))
    png = (d / "f0.png").read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "locked.png").write_bytes(png)
    (d / "locked.png").chmod(0)
    Image.fromarray(f1[..., 0], "L").save(d / "gray.png")
    Image.fromarray(np.dstack([f1, np.full((h, w), 7, np.uint8)]), "RGBA").save(d / "rgba.png")
    Image.fromarray(f1[..., 1].astype(np.uint16) * 257).save(d / "gray16.png")  # mode I;16
    cv2.imwrite(str(d / "rgb16.png"), f1[..., ::-1].astype(np.uint16) * 257)
    _write_huge_png(d / "huge.png")
    big, small = np.full((48, 64, 3), 200, np.uint8), np.full((32, 40, 3), 60, np.uint8)
    (d / "sizes.ts").write_bytes(_encode(None, "libx264", [big] * 3, "mpegts")
                                 + _encode(None, "libx264", [small] * 3, "mpegts"))
    if _av1_encoder():
        _encode(d / "av1.mp4", _av1_encoder(), _frames(5))
    (d / "junk.flo").write_bytes(b"PIEH" + rng.bytes(40))
    cv2.imwrite(str(d / "kitti8.png"), np.zeros((4, 5, 3), np.uint8))

    # Weights.
    sentinel = d / "code_ran"  # corpus_cases names it too
    torch.save({"model": _Evil(sentinel)}, d / "evil.pth")
    with open(d / "evil_raw.pth", "wb") as fh:
        pickle.dump({"model": _Evil(sentinel)}, fh)
    (d / "empty.pth").write_bytes(b"")
    (d / "evil.pkl").write_bytes(pickle.dumps({"v": {"video": _Evil(sentinel), "points": 0, "occluded": 0}}))
    _weights_folder(d, "wrong_shapes", edit_weights=_wrong_shape)
    _weights_folder(d, "truncated_st", edit_weights=_truncate)
    _weights_folder(d, "future", edit_config=lambda m: m.update(format_version=99))
    _weights_folder(d, "extra_field", edit_config=lambda m: m.update(licence="MIT"))
    _weights_folder(d, "arch_typo", edit_config=lambda m: m["architecture"].update(enc_dims=128))
    _weights_folder(d, "bad_value", edit_config=lambda m: m["architecture"].update(enc_dim="128"))
    _weights_folder(d, "not_json")
    (d / "not_json" / "config.json").write_text('{"format_version": 1, "architecture": {')


def corpus_cases(folder: str | os.PathLike) -> list[Case]:
    """The cases of the corpus in ``folder`` (written by :func:`write_inputs`); touches no file,
    so the list (names, which interfaces) is available before the files exist."""
    from cwm.flowio import read_flo, read_kitti_flow, read_tapvid
    from cwm.io import load_frame_pair, open_video, read_image, write_image, write_video

    d = Path(folder)
    h, w = PAIR
    f0, f1 = _frames(2)
    sentinel = d / "code_ran"
    av1 = _av1_encoder()
    pair = ["f0.png", "f1.png"]

    def predict(*args: str) -> list[str]:
        return ["predict", *args]

    pred_out = ("prediction.png", "comparison.png")

    def rgb(expected_shape):
        def check(img):
            assert img.dtype == np.uint8 and img.shape == expected_shape, (img.dtype, img.shape)
        return check

    def gray16_check(img):
        rgb((h, w, 3))(img)
        assert np.array_equal(img[..., 0], f1[..., 1]) and np.array_equal(img[..., 2], f1[..., 1])

    def frames_same_size(frames):
        assert frames.shape == (6, 48, 64, 3), frames.shape
        assert abs(frames[0].mean() - 200) < 5 and abs(frames[5].mean() - 60) < 5

    def last_frame(path):
        def call(out):
            with open_video(path) as v:
                return v.get([v.num_frames - 1])
        return call

    def read_all(path):
        def call(out):
            with open_video(path) as v:
                return v.get(range(v.num_frames))
        return call

    def nan_frames(value):  # a frame [3, H, W] in [0, 1] with one pixel set to value
        import torch

        t = torch.rand(3, h, w)
        t[0, 1, 2] = value
        return t

    def changing_sizes(out):
        write_video(out / "v.mp4", iter([np.zeros((16, 16, 3), np.uint8), np.zeros((16, 18, 3), np.uint8)]), fps=5)

    cases = [
        # ------------------------------------------------------------------ videos
        Case("empty_video", "0-byte .mp4", InputError, ("empty.mp4", "empty (0 bytes)"),
             api=lambda out: load_frame_pair(d / "empty.mp4"), cli=["flow", "empty.mp4"]),
        Case("random_bytes_video", "random bytes named .mp4", InputError, ("random.mp4", "no decodable frames"),
             api=lambda out: load_frame_pair(d / "random.mp4"), cli=["flow", "random.mp4"]),
        Case("truncated_video_header", "an .mp4 cut inside its header", InputError,
             ("truncated.mp4", "no decodable frames"),
             api=lambda out: load_frame_pair(d / "truncated.mp4"), cli=["flow", "truncated.mp4"]),
        Case("truncated_video_stream", "an .mp4 cut mid-stream: reading a lost frame", InputError,
             ("cut.mp4", "stream ends after"), api=last_frame(d / "cut.mp4")),
        Case("truncated_video_flow", "an .mp4 cut mid-stream: flow of the frames that remain", None,
             cli=["flow", "cut.mp4", "--every", "4", "-q"], outputs=("flow.mp4", "flow.npz"),
             warning="the video ended early"),
        Case("one_frame_video", "a 1-frame video", InputError, ("one.mp4", "1 frame(s), need at least 2"),
             api=lambda out: load_frame_pair(d / "one.mp4"), cli=["flow", "one.mp4"]),
        Case("frames_change_size", "a video whose frames change size (48x64, then 32x40)", None,
             api=read_all(d / "sizes.ts"), check=frames_same_size, cli=["flow", "sizes.ts", "-q"],
             outputs=("flow.mp4", "flow.npz")),
        Case("av1_video", "an AV1 clip (decoder fallback)", None,
             api=read_all(d / "av1.mp4"), check=lambda fr: rgb((5, h, w, 3))(fr),
             cli=["flow", "av1.mp4", "-q"], outputs=("flow.mp4", "flow.npz"),
             skip=None if av1 else "PyAV has no AV1 encoder here"),
        Case("folder_as_video", "a folder where a video is expected", InputError, ("folder.mp4", "folder"),
             api=lambda out: load_frame_pair(d / "folder.mp4"), cli=["flow", "folder.mp4"]),
        # ------------------------------------------------------------------ images
        Case("gray_png", "an 8-bit grayscale PNG", None, api=lambda out: read_image(d / "gray.png"),
             check=rgb((h, w, 3)), cli=predict("gray.png", "f1.png"), outputs=pred_out),
        Case("rgba_png", "an RGBA PNG", None, api=lambda out: read_image(d / "rgba.png"),
             check=lambda img: (rgb((h, w, 3))(img), np.testing.assert_array_equal(img, f1)),
             cli=predict("f0.png", "rgba.png"), outputs=pred_out),
        Case("gray16_png", "a 16-bit grayscale PNG", None, api=lambda out: read_image(d / "gray16.png"),
             check=gray16_check, cli=predict("gray16.png", "f1.png"), outputs=pred_out),
        Case("rgb16_png", "a 16-bit RGB PNG", None, api=lambda out: read_image(d / "rgb16.png"),
             check=lambda img: np.testing.assert_array_equal(img, f1), cli=predict("f0.png", "rgb16.png"),
             outputs=pred_out),
        Case("huge_image", f"a {HUGE_SIDE}x{HUGE_SIDE} PNG, shrunk while reading (--size 64)", None,
             api=lambda out: read_image(d / "huge.png", max_side=64), check=rgb((64, 64, 3)),
             cli=predict("huge.png", "huge.png", "--size", "64"), outputs=pred_out),
        Case("tiny_image", "a 1x1 image", InputError, ("1x1",),
             api=lambda out: _predictor().predict(read_image(d / "tiny.png"), read_image(d / "tiny.png")),
             cli=predict("tiny.png", "tiny.png")),
        Case("junk_png", "random bytes named .png", InputError, ("junk.png", "not a recognised image"),
             api=lambda out: read_image(d / "junk.png"), cli=predict("junk.png", "f1.png")),
        Case("truncated_png", "a PNG cut in half", InputError, ("truncated.png", "undecodable"),
             api=lambda out: read_image(d / "truncated.png"), cli=predict("f0.png", "truncated.png")),
        Case("missing_image", "a path that does not exist", InputError, ("missing.png", "no such file"),
             api=lambda out: read_image(d / "missing.png"), cli=predict("missing.png", "f1.png")),
        Case("folder_as_image", "a folder where an image is expected", InputError, ("folder.png", "folder"),
             api=lambda out: read_image(d / "folder.png"), cli=predict("f0.png", "folder.png")),
        Case("unreadable_image", "an image without read permission", InputError,
             ("locked.png", "permission denied"), api=lambda out: read_image(d / "locked.png"),
             cli=predict("locked.png", "f1.png"), unreadable=d / "locked.png"),
        Case("size_too_large", "--size larger than the input (cwm does not enlarge)", InputError,
             ("--size 100000", f"{w}x{h} input", "only shrinks"), cli=predict(*pair, "--size", "100000")),
        Case("size_too_large_video", "cwm flow --size larger than the video's frames", InputError,
             ("--size 8000", f"{w}x{h} input"), cli=["flow", "clip.mp4", "--size", "8000"]),
        Case("junk_image_counterfactual", "cwm counterfactual on random bytes", InputError,
             ("junk.png", "not a recognised image"), cli=["counterfactual", "junk.png", "--move", "1,1,1,1"]),
        Case("segment_frame_past_end", "cwm segment --frame past the last frame", InputError,
             ("clip.mp4", "need at least 10"), cli=["segment", "clip.mp4", "--frame", "9"]),
        Case("depth_mismatched_pair", "cwm depth on two images of different sizes", InputError,
             ("frame sizes differ", "tall.png"), cli=["depth", "f0.png", "tall.png"]),
        Case("occlusion_random_bytes", "cwm occlusion on random bytes named .mp4", InputError,
             ("random.mp4", "no decodable frames"), cli=["occlusion", "random.mp4"]),
        Case("mismatched_pair", "two images of different sizes", InputError,
             ("frame sizes differ", "f0.png", "tall.png"),
             api=lambda out: load_frame_pair(d / "f0.png", d / "tall.png"), cli=predict("f0.png", "tall.png")),
        # ------------------------------------------------------------------ arrays through the API
        Case("mismatched_arrays", "predict() on arrays of different sizes", InputError, ("frame sizes differ",),
             api=lambda out: _predictor().predict(f0, np.zeros((h + 8, w, 3), np.uint8))),
        Case("nan_tensor", "predict() on a tensor holding NaN", InputError, ("frame0", "NaN or inf"),
             api=lambda out: _predictor().predict(nan_frames(float("nan")), nan_frames(0.5))),
        Case("inf_tensor", "flow() on a tensor holding inf", InputError, ("NaN or inf",),
             api=lambda out: _predictor().flow(nan_frames(0.5), nan_frames(float("inf")))),
        Case("nan_move", "counterfactual() with a NaN point", InputError, ("move 0", "NaN or inf"),
             api=lambda out: _predictor().counterfactual(f0, moves=[((float("nan"), 3.0), (1.0, 0.0))])),
        Case("float_array", "predict() on a float64 numpy image", InputError, ("frame0", "uint8"),
             api=lambda out: _predictor().predict(f0.astype(np.float64), f1)),
        # ------------------------------------------------------------------ weights
        Case("pickle_runs_code", "a .pth (torch.save) whose pickle would run code on load", WeightsError,
             ("evil.pth", "weights-only"), api=lambda out: _load("evil.pth", d),
             cli=[*predict(*pair), "--weights", "evil.pth"], sentinel=sentinel),
        Case("raw_pickle_runs_code", "a raw-pickle .pth that would run code on load", WeightsError,
             ("evil_raw.pth", "weights-only"), api=lambda out: _load("evil_raw.pth", d),
             cli=[*predict(*pair), "--weights", "evil_raw.pth"], sentinel=sentinel),
        Case("tapvid_pickle_runs_code", "a TAP-Vid .pkl that would run code on load", InputError,
             ("evil.pkl", "not allowed"), api=lambda out: read_tapvid(d / "evil.pkl"), sentinel=sentinel),
        Case("wrong_shapes", "a .safetensors with a tensor of the wrong shape", WeightsError,
             ("model.safetensors", "decoder.head.weight", "shape"),
             api=lambda out: _load("wrong_shapes/model.safetensors", d),
             cli=[*predict(*pair), "--weights", "wrong_shapes/model.safetensors"]),
        Case("truncated_weights", "a .safetensors cut in half", WeightsError, ("model.safetensors", "truncated"),
             api=lambda out: _load("truncated_st", d), cli=[*predict(*pair), "--weights", "truncated_st"]),
        Case("future_config", "config.json from a future format version", ConfigError,
             ("config.json", "format_version 99", "upgrade"), api=lambda out: _load("future", d),
             cli=[*predict(*pair), "--weights", "future"]),
        Case("unknown_config_field", "config.json with an unknown top-level field", ConfigError,
             ("config.json", "unknown top-level field", "licence"), api=lambda out: _load("extra_field", d),
             cli=[*predict(*pair), "--weights", "extra_field"]),
        Case("unknown_arch_field", "config.json with a misspelt architecture field", ConfigError,
             ("config.json", "enc_dims", "did you mean enc_dim"), api=lambda out: _load("arch_typo", d),
             cli=[*predict(*pair), "--weights", "arch_typo"]),
        Case("config_wrong_type", "config.json with a string where an integer belongs", ConfigError,
             ("config.json", "enc_dim must be a positive integer"), api=lambda out: _load("bad_value", d),
             cli=[*predict(*pair), "--weights", "bad_value"]),
        Case("config_not_json", "config.json that is not JSON", ConfigError, ("config.json", "cannot parse"),
             api=lambda out: _load("not_json", d), cli=[*predict(*pair), "--weights", "not_json"]),
        Case("bad_device", "a device that does not exist", ConfigError, ("bogus", "not a device"),
             api=lambda out: _load("default", d, device="bogus"), cli=[*predict(*pair), "--device", "bogus"]),
        Case("empty_weights", "a 0-byte .pth", WeightsError, ("empty.pth", "empty (0 bytes)"),
             api=lambda out: _load("empty.pth", d), cli=[*predict(*pair), "--weights", "empty.pth"]),
        Case("junk_flo", "a .flo with a good tag and a bad size", InputError, ("junk.flo", "does not match"),
             api=lambda out: read_flo(d / "junk.flo")),
        Case("kitti_8bit", "an 8-bit PNG read as KITTI flow", InputError, ("kitti8.png", "16-bit"),
             api=lambda out: read_kitti_flow(d / "kitti8.png")),
        # ------------------------------------------------------------------ outputs
        Case("existing_output", "an output file that already exists (no --overwrite)", InputError,
             ("prediction.png", "already exists", "--overwrite"), cli=predict(*pair),
             existing={"prediction.png": b"the user's own file"}),
        Case("existing_file_api", "write_image() onto an existing file", InputError, ("mine.png", "exists"),
             api=lambda out: write_image(out / "mine.png", f0), existing={"mine.png": b"the user's own file"}),
        Case("output_is_a_file", "-o naming a file, not a folder", InputError, ("it is a file",),
             cli=predict(*pair), out_is_file=True),
        Case("video_frames_change_size_on_write", "write_video() with frames of two sizes", InputError,
             ("v.mp4", "frame 1 is 18x16"), api=changing_sizes),
    ]
    return cases


def _load(weights: str | Path, folder: Path, device: str | None = "cpu"):
    """``cwm.load`` of a path relative to ``folder`` (or a registered name)."""
    import cwm

    path = folder / weights if (folder / weights).exists() else weights
    return cwm.load(str(path), device=device)
