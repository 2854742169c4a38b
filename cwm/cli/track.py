"""``cwm track``: follow points through a whole video (or a folder of frames), or many videos.

Writes ``tracks.npz`` (``queries [N, 3]`` ``(t, x, y)``, ``tracks [N, T, 2]`` ``(x, y)``,
``occluded [N, T]`` bool, ``mode``, ``gap``) and ``tracks.mp4``, the video with each point's
recent path drawn as a trail. Frames are read one at a time (memory flat in the video's length).

A folder of videos or a glob is processed video by video by :mod:`cwm.cli.folders` (one output
folder per video, a manifest, resume). Its queries: ``--grid N`` in every video, ``--points
FILE`` the same rows in every video, or ``--points QDIR``: a folder of query files, one per
video, named after the video's output name (its path relative to the input folder, without the
extension) plus ``.txt`` or ``.npy``; e.g. ``QDIR/cars/clip1.txt`` for ``IN/cars/clip1.mp4``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cwm.cli.common import (Outputs, UsageError, add_command, add_output_options, default_out,
                            load_predictor, positive_float, positive_int, progress, run_outputs)

EXAMPLES = """\
cwm track demos/assets/sample.mp4 --grid 8                 # an 8x8 grid of frame 0, chained
cwm track frames/ --grid 6 --mode cfg --gap 4              # a folder of frames, anchors every 4
cwm track clip.mp4 --points queries.txt --mode direct      # rows "t x y" (or "x y": frame 0)
cwm track videos/ --grid 8 -o tracks/                      # every video under videos/, resumable
cwm track videos/ --points queries/ -o tracks/             # queries/<relative path>.txt per video
"""
MODES = ("direct", "chained", "cfg")


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "track", "track points through a video", EXAMPLES,
                    description="Point tracking with the CWM's counterfactual flow probe, composed over "
                                "the video: direct (each frame from the query frame), chained (frame to "
                                "frame) or cfg (a constant frame gap). Writes tracks.npz and tracks.mp4.")
    p.add_argument("input", metavar="VIDEO|FRAMES_DIR|FOLDER|GLOB",
                   help="a video file, a folder of frames (sorted by name), or many videos: a FOLDER "
                        "(searched recursively; each video and each folder of frames to OUT/<its relative "
                        "path>/, with a manifest, resumable) or a quoted 'GLOB'")
    q = p.add_mutually_exclusive_group(required=True)
    q.add_argument("--points", type=Path, metavar="FILE|QDIR",
                   help="query points: a text file of rows 't x y' (or 'x y', at --query-frame), "
                        "comma or space separated, or a .npy [N, 3] / [N, 2]; pixels, (x, y) = (column, row). "
                        "Many videos: one FILE for all, or a folder QDIR of one file per video, "
                        "QDIR/<the video's relative path without extension>.txt (or .npy)")
    q.add_argument("--grid", type=positive_int, metavar="N", help="an N x N grid of points at --query-frame")
    p.add_argument("--query-frame", type=int, default=0, metavar="T",
                   help="frame of --grid points and of 2-column --points (default 0)")
    p.add_argument("--mode", choices=MODES, default="chained", help="how pairs are composed (default chained)")
    p.add_argument("--gap", type=positive_int, default=5, metavar="G", help="cfg: the frame gap (default 5)")
    p.add_argument("--redetect", type=positive_int, default=4, metavar="K",
                   help="chained/cfg: look for lost points again every K frames (default 4)")
    p.add_argument("--max-flow", type=positive_float, default=None, metavar="PX",
                   help="largest motion searched per pair, in input pixels (default: the probe's)")
    p.add_argument("--trail", type=positive_int, default=8, metavar="K", help="frames of trail drawn (default 8)")
    add_output_options(p)
    return p


def read_queries(path: Path, query_frame: int) -> np.ndarray:
    """Rows ``(t, x, y)`` from a text or ``.npy`` file; InputError (one line) when unreadable."""
    from cwm.errors import InputError

    try:
        if path.suffix.lower() == ".npy":
            rows = np.load(path, allow_pickle=False)
        else:
            text = path.read_text().replace(",", " ")
            rows = np.array([[float(v) for v in line.split()] for line in text.splitlines()
                             if line.strip() and not line.lstrip().startswith("#")])
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"--points {path}: cannot read query points ({' '.join(str(e).split())[:80]})") from None
    rows = np.asarray(rows, np.float64)
    if rows.ndim == 2 and rows.shape[1] == 2:
        rows = np.concatenate([np.full((len(rows), 1), float(query_frame)), rows], axis=1)
    if rows.ndim != 2 or rows.shape[1] != 3 or not len(rows):
        raise InputError(f"--points {path}: expected rows 't x y' or 'x y', got an array of shape {rows.shape}")
    return rows


def grid_queries(n: int, size: tuple[int, int], frame: int) -> np.ndarray:
    """``n x n`` points ``(t, x, y)`` at the centres of an ``n x n`` split of the frame."""
    h, w = size
    xs = (np.arange(n) + 0.5) * w / n - 0.5
    ys = (np.arange(n) + 0.5) * h / n - 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([np.full(gx.size, float(frame)), gx.ravel(), gy.ravel()], axis=1)


def query_file(qdir: Path, name: str) -> Path:
    """The query file of the video named ``name`` (its output name) in ``qdir``: ``<name>.txt``
    or ``<name>.npy``; InputError when there is none or both."""
    from cwm.errors import InputError

    found = [qdir / f"{name}{ext}" for ext in (".txt", ".npy") if (qdir / f"{name}{ext}").is_file()]
    if len(found) != 1:
        raise InputError(f"--points {qdir}: {'no' if not found else 'two'} query file{'s' if found else ''} "
                         f"for video '{name}' (expected one of {name}.txt, {name}.npy)")
    return found[0]


def _query_options(args: argparse.Namespace, item) -> dict:
    """A video's own options: the digest of its query file under ``--points QDIR``."""
    from cwm.cli.manifest import file_digest
    from cwm.errors import InputError

    if args.points is None or not args.points.is_dir():
        return {}
    try:
        return {"points": file_digest(query_file(args.points, item.name))}
    except InputError:
        return {"points": None}  # the video fails with that reason when it is processed


def run(args: argparse.Namespace) -> int:
    from cwm.cli.folders import dispatch
    from cwm.errors import InputError

    if args.gap != 5 and args.mode != "cfg":
        raise UsageError("track: --gap applies to --mode cfg")
    if args.points is not None and not args.points.exists():
        raise InputError(f"--points {args.points}: no such file or folder")
    code = dispatch(args, "track", run_one, extra=_query_options)
    return run_one(args) if code is None else code


def run_one(args: argparse.Namespace) -> int:
    """Track the queries through one video (``args.input``) into ``args.out``."""
    from cwm.frames import check_queries
    from cwm.framesource import open_frames

    points = args.points
    if points is not None and points.is_dir():
        if getattr(args, "item_name", None) is None:
            raise UsageError("track: --points QDIR (one query file per video) applies to a folder of videos; "
                             "give one video a query FILE")
        points = query_file(points, args.item_name)
    outputs = Outputs(args.out or default_out([args.input], "track"), args.overwrite)
    npz_path, mp4_path = outputs.plan("tracks.npz", "tracks.mp4")
    with open_frames(args.input, window=args.gap + 2) as frames:
        queries = (read_queries(points, args.query_frame) if points is not None
                   else grid_queries(args.grid, frames.size, args.query_frame))
        check_queries(queries, len(frames), frames.size)        # before loading the model
        outputs.check()
        predictor = load_predictor(args)
        options = {} if args.max_flow is None else {"max_flow": args.max_flow}

        def body():
            with progress(2 * len(frames), "track", args.quiet) as bar:
                result = predictor.track_video(frames, queries, mode=args.mode, gap=args.gap,
                                               redetect=args.redetect, progress=lambda: bar.update(1),
                                               **options)
            outputs._write(npz_path, lambda: result.save(npz_path, overwrite=args.overwrite))
            drawn = (result.draw(frames[t], t, trail=args.trail) for t in range(len(frames)))
            outputs.video(mp4_path, drawn, fps=frames.fps)

        run_outputs(outputs, body)
        args.pairs_done = len(frames) - 1
    outputs.report()
    return 0
