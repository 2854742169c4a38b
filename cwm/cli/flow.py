"""``cwm flow``: dense optical flow of a video or a frame pair (also the engine of ``cwm occlusion``).

A video is streamed: frames are decoded one at a time and only the ``gap + 1`` newest are held,
so memory stays constant however long the video is. Every processed pair ``(t, t + gap)`` adds its
raw arrays to one compressed ``<kind>.npz`` (streamed member by member, :mod:`cwm.npz`; or, with
``--raw npy``, a file ``raw/<t>.npy``; ``--format flo``: ``raw/<t>.flo``) and a frame to the visual
(``<kind>.mp4`` or ``png/<t>.png``); two images give ``<kind>.png`` and ``<kind>.npy``.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cwm.cli.common import (Outputs, UsageError, add_command, add_output_options, check_size, default_out,
                            fit_size, fitted, load_predictor, positive_float, positive_int,
                            progress, run_outputs)

#: Output frame rate when the input video does not state one.
FALLBACK_FPS = 10.0

EXAMPLES = """\
cwm flow demos/assets/sample.mp4                      # -> cwm_out/sample_flow/flow.mp4 + flow.npz
cwm flow demos/assets/sample.mp4 --every 4 --arrows   # every 4th pair, arrows on the frame
cwm flow video.mp4 --format raw --float16             # flow.npz only, float16 (half the size)
cwm flow video.mp4 --raw npy                          # one raw/<t>.npy per pair instead of flow.npz
cwm flow video.mp4 --gap 2 --size 256 -o out/         # pairs (t, t+2), frames resized to 256 px
cwm flow frame0.png frame1.png                        # one pair -> flow.png + flow.npy
cwm flow frame0.png frame1.png --format flo           # raw Middlebury flow.flo only
"""


@dataclass(frozen=True)
class Kind:
    """What a dense command computes and how it draws one result."""

    name: str
    formats: tuple[str, ...]
    raw: Callable  # (result) -> the array of raw/<t>.npy (or .flo)
    arrays: Callable  # (result) -> {name: array} of one pair in <kind>.npz (members <name>_<t>)
    visual: Callable  # (frame0, result, args) -> uint8 [H, W, 3]


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="one VIDEO, a folder of frames, two images FRAME0 FRAME1, or many videos: a "
                        "FOLDER (searched recursively; each video and each folder of frames to "
                        "OUT/<its relative path>/, with a manifest, resumable) or a quoted 'GLOB'")
    g = p.add_argument_group("frames")
    g.add_argument("--gap", type=positive_int, default=None, metavar="K",
                   help="video: pair frame t with frame t+K (default 1)")
    g.add_argument("--every", type=positive_int, default=None, metavar="K",
                   help="video: process every K-th pair only (default 1: all)")
    g.add_argument("--size", type=positive_int, default=None, metavar="S",
                   help="shrink frames so the longer side is S pixels (outputs are at that size; "
                        "never enlarges: a larger S is refused)")


def add_visual_arguments(p: argparse.ArgumentParser, kind: Kind, members: str) -> None:
    """``--format``, ``--layout``, ``--raw`` and ``--float16``; ``members`` words the npz's arrays."""
    g = p.add_argument_group("visual")
    g.add_argument("--format", choices=kind.formats, default=None,
                   help="mp4: a visual video + raw arrays (video default); png: a visual PNG per pair + "
                        "raw arrays (image-pair default); raw: raw arrays only; npy: raw only, one .npy "
                        "per pair (= --format raw --raw npy)"
                        + ("; flo: raw only, one Middlebury .flo per pair" if "flo" in kind.formats else ""))
    g.add_argument("--layout", choices=("side", "single"), default="side",
                   help="side: input frame beside the result (default); single: the result alone")
    r = p.add_argument_group("raw arrays")
    r.add_argument("--raw", choices=("npz", "npy"), default=None,
                   help=f"npz: one compressed {kind.name}.npz for the whole input, written pair by pair "
                        f"(memory stays flat): per pair t the members {members} (t as six digits, "
                        "e.g. _000000), and frame_index int64 [N, 2] rows (t, t+gap); np.load reads it, "
                        "cwm.npz.load_stacked stacks it to [N, ...]. npy: one raw/<t>.npy per pair "
                        f"({kind.name}.npy for two images). Default: npz for a video, npy for two images")
    r.add_argument("--float16", action="store_true",
                   help="store float arrays as float16: half the size, about 3 significant digits "
                        "(flow of 100 px to 0.06 px)")


def add_max_flow(g) -> None:
    """``--max-flow PX`` (:func:`probes.flow.flow`'s ``max_flow``, in input pixels) on group ``g``."""
    g.add_argument("--max-flow", type=positive_float, default=None, metavar="PX",
                   help="largest motion searched, in input pixels (default: the probe's, a fraction of the "
                        "smaller side); "
                        "raise it for fast motion, lower it to run faster")


def add_probe_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("probe")
    add_max_flow(g)
    g.add_argument("--stride", type=positive_int, default=None, metavar="N",
                   help="one flow source every N model pixels, then interpolated (must divide the "
                        "model's input size; default: one per patch; 1: every pixel, slowest)")
    g.add_argument("--batch", type=positive_int, default=1, metavar="K",
                   help="video: pairs given to the probe at once (default 1; larger uses more memory "
                        "and is faster where the model is not already busy, e.g. on a GPU; a batch "
                        "draws its probe masks together, so results differ from --batch 1 within "
                        "the probe's noise)")


def probe_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of :func:`probes.flow.flow` given on the command line."""
    return {k: v for k, v in (("max_flow", args.max_flow), ("stride", args.stride)) if v is not None}


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "flow", "dense optical flow of a video or a frame pair", EXAMPLES,
                    description="Dense optical flow read out of the CWM as counterfactuals: for each "
                                "pair, a colour-coded flow image (Middlebury wheel: hue = direction, "
                                "saturation = speed) and the raw flow [H, W, 2] (dx, dy) in pixels.")
    add_source_arguments(p)
    add_probe_arguments(p)
    add_visual_arguments(p, FLOW, "flow_<t> [H, W, 2] float32 (dx, dy), occlusion_<t> [H, W] bool "
                                  "(True = occluded), confidence_<t> [H, W] float32 in [0, 1]")
    p.add_argument("--arrows", action="store_true", help="draw flow arrows on the input frame")
    p.add_argument("--color-max", type=positive_float, default=None, metavar="PX",
                   help="flow magnitude drawn at full colour (default: per-frame 99th percentile; "
                        "fix it for a video whose colours should be comparable across frames)")
    add_output_options(p)
    return p


def _flow_visual(frame0: np.ndarray, result, args) -> np.ndarray:
    from cwm import viz

    flow = result.flow
    colour = viz.flow_to_color(flow, max_flow=args.color_max)
    step = max(8, min(flow.shape[:2]) // 12)
    if args.layout == "single":
        return viz.draw_arrows(colour, flow, step=step, color=(0, 0, 0)) if args.arrows else colour
    shown = viz.draw_arrows(frame0, flow, step=step) if args.arrows else frame0
    return viz.side_by_side([shown, colour])


FLOW = Kind("flow", ("mp4", "png", "raw", "npy", "flo"), raw=lambda r: r.flow.astype(np.float32),
            arrays=lambda r: {"flow": np.asarray(r.flow, np.float32), "occlusion": np.asarray(r.occlusion, bool),
                              "confidence": np.asarray(r.confidence, np.float32)},
            visual=_flow_visual)


def run(args: argparse.Namespace) -> int:
    return run_dense(args, FLOW)


# ------------------------------------------------------------------------------ the engine
@dataclass
class _Job:
    """What one dense run reads and writes; every path is planned before anything is computed."""

    pairs: Iterator[tuple[int, np.ndarray, np.ndarray]]  # (t, frame t, frame t + gap), streamed
    starts: list[int]  # the pairs' t, in order
    gap: int
    shape: tuple[int, int]  # (H, W) of the frames given to the probe
    raw: dict[int, Path]  # pair t -> raw array file (--raw npy, --format flo)
    npz: Path | None  # the one raw .npz (--raw npz)
    png: dict[int, Path]  # pair t -> visual PNG (format png)
    video: Path | None  # the visual video (format mp4)
    fps: float = FALLBACK_FPS
    done: list[int] = field(default_factory=list)  # pairs finished


def run_dense(args: argparse.Namespace, kind: Kind) -> int:
    """Plan and check every output, then stream pairs through the predictor's flow probe.

    Pairs go to the probe ``--batch`` at a time (frames decoded once, shared by the pairs that
    use them); a reader thread decodes ahead while the model computes (:mod:`cwm.cli.readahead`). The number of
    pairs processed is left in ``args.pairs_done`` (for :mod:`cwm.cli.folders`' summary).
    """
    from cwm.cli.folders import dispatch

    code = dispatch(args, kind.name, lambda one: run_dense(one, kind))
    if code is not None:
        return code
    fmt, raw = _check_usage(args, kind)
    outputs = Outputs(args.out or default_out(args.inputs, kind.name), args.overwrite)
    reader = _open_video(args) if len(args.inputs) == 1 else None
    try:
        job = _plan(args, kind, fmt, raw, outputs, reader)
        outputs.check()
        from cwm.cli.readahead import chunks, readahead

        predictor = load_predictor(args)  # torch: imported once the inputs are known to be good
        bar = progress(len(job.starts), kind.name, args.quiet)

        batch = max(1, getattr(args, "batch", 1) or 1)
        pairs = readahead(job.pairs, 2 * batch)

        def computed() -> Iterator[tuple[int, np.ndarray, object]]:
            for chunk in chunks(pairs, batch):
                if len(chunk) == 1:
                    (t, frame0, frame1), = chunk
                    yield t, frame0, predictor.flow(frame0, frame1, **probe_options(args))
                    continue
                out = predictor.flow(np.stack([c[1] for c in chunk]), np.stack([c[2] for c in chunk]),
                                     **probe_options(args))
                yield from ((t, frame0, r) for (t, frame0, _), r in zip(chunk, out))

        def results(add) -> Iterator[tuple[int, np.ndarray, object]]:
            for t, frame0, result in computed():
                if add is None:
                    outputs.array(job.raw[t], _stored(kind.raw(result), args.float16))
                else:
                    for name, array in kind.arrays(result).items():
                        add(f"{name}_{t:06d}", _stored(array, args.float16))
                job.done.append(t)
                bar.update()
                yield t, frame0, result

        def body() -> None:
            with outputs.npz(job.npz) if job.npz else contextlib.nullcontext() as add:
                if job.video is not None:  # the visual frames stream into the video as they come
                    outputs.video(job.video, (kind.visual(f0, r, args) for _, f0, r in results(add)), job.fps)
                else:
                    for t, frame0, result in results(add):
                        if t in job.png:
                            outputs.image(job.png[t], kind.visual(frame0, result, args))
                if add is not None:
                    add("frame_index", np.array([(t, t + job.gap) for t in job.done], np.int64).reshape(-1, 2))

        try:
            run_outputs(outputs, body)
        finally:
            bar.close()
    finally:
        if reader is not None:
            reader.close()
    args.pairs_done = len(job.done)
    if len(job.done) < len(job.starts):
        print(f"cwm: warning: the video ended early: {len(job.done)} of {len(job.starts)} pairs processed",
              file=sys.stderr)
    outputs.report()
    return 0


def _stored(array: np.ndarray, float16: bool) -> np.ndarray:
    """``array`` as written: float arrays as float16 under ``--float16``, others unchanged."""
    return array.astype(np.float16) if float16 and array.dtype.kind == "f" else array


def _check_usage(args: argparse.Namespace, kind: Kind) -> tuple[str, str]:
    """Reject input/flag combinations that cannot work; returns ``(format, raw container)``."""
    from cwm.io import is_image_path

    if len(args.inputs) > 2:
        raise UsageError(f"{kind.name}: expected one video or two images, got {len(args.inputs)} inputs")
    video = len(args.inputs) == 1
    if not video and (args.gap or args.every):
        raise UsageError(f"{kind.name}: --gap and --every apply to a video input, not to two images")
    if video and is_image_path(args.inputs[0]):
        raise UsageError(f"{kind.name}: got one image '{args.inputs[0]}'; pass a second image "
                         "(frame 1) or a video")
    fmt = args.format or ("mp4" if video else "png")
    if fmt == "mp4" and not video:
        raise UsageError(f"{kind.name}: --format mp4 needs a video input; use png, raw, npy"
                         + (" or flo" if "flo" in kind.formats else "") + " for two images")
    if fmt == "flo":
        if args.raw or args.float16:
            raise UsageError(f"{kind.name}: --format flo writes Middlebury .flo files (float32); "
                             f"--{'raw' if args.raw else 'float16'} applies to npz/npy raw arrays")
        return fmt, "flo"
    if fmt == "npy":
        if args.raw == "npz":
            raise UsageError(f"{kind.name}: --format npy writes one .npy per pair; for raw arrays only, "
                             "in one .npz, use --format raw")
        return fmt, "npy"
    return fmt, args.raw or ("npz" if video else "npy")


def _open_video(args: argparse.Namespace):
    from cwm.io import open_video

    if Path(args.inputs[0]).is_dir():
        from cwm.cli.discovery import FramesFolderReader

        return FramesFolderReader(args.inputs[0], min_frames=(args.gap or 1) + 1)
    return open_video(args.inputs[0], min_frames=(args.gap or 1) + 1)


def _plan(args: argparse.Namespace, kind: Kind, fmt: str, raw: str, outputs: Outputs, reader) -> _Job:
    """Declare every output file of the run to ``outputs`` and set up the pair stream."""
    from cwm.io import load_frame_pair

    ext = f".{raw}"
    if reader is None:  # two images: one pair, files named after the command
        f0, f1 = (fit_size(f, args.size) for f in load_frame_pair(*args.inputs, max_side=args.size))
        gap, starts, pairs, shape = 1, [0], iter([(0, f0, f1)]), f0.shape[:2]
        raw_files = {} if raw == "npz" else dict(zip(starts, outputs.plan(f"{kind.name}{ext}")))
        png = dict(zip(starts, outputs.plan(f"{kind.name}.png"))) if fmt == "png" else {}
        fps = FALLBACK_FPS
    else:
        check_size(args.size, reader.size)
        gap, every = args.gap or 1, args.every or 1
        starts = list(range(0, reader.num_frames - gap, every))
        pairs, shape = _stream_pairs(reader, gap, every, args.size), fitted(reader.size, args.size)
        raw_files = {} if raw == "npz" else dict(zip(starts, outputs.plan(*(f"raw/{t:06d}{ext}" for t in starts))))
        png = dict(zip(starts, outputs.plan(*(f"png/{t:06d}.png" for t in starts)))) if fmt == "png" else {}
        fps = (reader.fps or FALLBACK_FPS) / every
    npz = outputs.plan(f"{kind.name}.npz")[0] if raw == "npz" else None
    video = outputs.plan(f"{kind.name}.mp4")[0] if fmt == "mp4" else None
    return _Job(pairs, starts, gap, shape, raw_files, npz, png, video, fps=fps)


def _stream_pairs(reader, gap: int, every: int, size: int | None) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(t, frame_t, frame_t+gap)`` for ``t = 0, every, 2*every, ...``, holding gap+1 frames.

    Stops quietly where the stream ends (a truncated file); the caller reports the pairs missed.
    """
    if every > gap:  # pairs do not share frames: decode just the two (forward, no revisits)
        starts = range(0, reader.num_frames - gap, every)
        first: dict[int, np.ndarray] = {}
        for i, frame in reader.iter_indices(sorted({j for t in starts for j in (t, t + gap)})):
            if i in starts:
                first[i] = fit_size(frame, size)
            if i - gap in first:
                yield i - gap, first.pop(i - gap), fit_size(frame, size)
        return
    window: collections.deque = collections.deque(maxlen=gap + 1)
    for i, frame in enumerate(reader.iter_frames()):
        window.append(fit_size(frame, size))
        t = i - gap
        if t >= 0 and t % every == 0:
            yield t, window[0], window[-1]
