"""``cwm segment``: Spelke segments (what moves together when poked) of an image or a video frame."""
from __future__ import annotations

import argparse
import sys

import numpy as np

from cwm.cli.common import (Outputs, UsageError, add_command, add_output_options, check_inside,
                            default_out, load_predictor, note_aspect, parse_point, positive_int, run_outputs)

EXAMPLES = """\
cwm segment demos/assets/still.png --point 45,86             # the object under (45, 86)
cwm segment demos/assets/still.png --point 45,86 --point 10,50
cwm segment demos/assets/still.png --auto                    # all objects
cwm segment demos/assets/sample.mp4 --frame 5 --point 64,64 --directions 2 -o out/
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "segment", "Spelke segments from virtual pokes", EXAMPLES,
                    description="Spelke segments: poke the image at a point (a counterfactual motion) "
                                "and keep what moves with it. Writes mask_XX.png (white = segment), "
                                "one per point or per object found, masks.npy (bool [N, H, W]) and "
                                "overlay.png.")
    p.add_argument("input", metavar="IMAGE_OR_VIDEO", help="an image, a video (see --frame), or many: a FOLDER of videos or frame folders "
                        "(recursive) or a quoted 'GLOB', each to OUT/<relative path>/ with a manifest")
    p.add_argument("--point", type=parse_point, action="extend", nargs="+", default=[], metavar="X,Y",
                   help="segment the object under X,Y (pixels; repeatable)")
    p.add_argument("--auto", action="store_true",
                   help="find all objects (the default when no --point is given)")
    p.add_argument("--frame", type=int, default=None, metavar="N", help="video: the frame to segment (default 0)")
    g = p.add_argument_group("probe")
    g.add_argument("--method", choices=("poke", "jacobian"), default=None,
                   help="poke: counterfactual flow of finite pokes (default); jacobian: the flow's "
                        "derivative with respect to the poke (one JVP per point; needs texture)")
    g.add_argument("--directions", type=positive_int, default=None, metavar="N",
                   help="poke directions per point (default: the probe's; fewer is faster and noisier)")
    add_output_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from cwm.cli.folders import dispatch

    code = dispatch(args, "segment", run_one)
    return run_one(args) if code is None else code


def run_one(args: argparse.Namespace) -> int:
    from cwm.io import is_video_path, open_video, read_image

    if args.auto and args.point:
        raise UsageError("segment: pass --point or --auto, not both")
    video = is_video_path(args.input)
    if args.frame is not None and not video:
        raise UsageError("segment: --frame applies to a video input")
    outputs = Outputs(args.out or default_out([args.input], "segment"), args.overwrite)
    overlay_path, npy_path = outputs.plan("overlay.png", "masks.npy")
    outputs.plan_pattern("mask_*.png")
    if video:
        with open_video(args.input, min_frames=(args.frame or 0) + 1) as reader:
            image = reader.get([args.frame or 0])[0]
    else:
        image = read_image(args.input)
    check_inside(args.point, image.shape[:2], "--point")
    outputs.check()
    predictor = load_predictor(args)  # torch: imported once the inputs are known to be good
    options = {k: v for k, v in (("method", args.method), ("directions", args.directions)) if v is not None}
    result = predictor.segment(image, points=args.point or None, **options)
    masks = np.asarray(result.masks, dtype=bool)

    def body() -> None:
        for i, m in enumerate(masks):
            outputs.image(outputs.path(f"mask_{i:02d}.png"), m.astype(np.uint8) * 255)
        outputs.array(npy_path, masks)
        outputs.image(overlay_path, result.visualize())

    run_outputs(outputs, body)
    note_aspect(args, predictor, image.shape, "each mask")
    outputs.report()
    if not len(masks):
        print("cwm: warning: no segment found", file=sys.stderr)
    return 0
