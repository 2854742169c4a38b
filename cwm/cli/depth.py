"""``cwm depth``: relative depth from motion parallax (a frame pair, a video, or a stereo pair)."""
from __future__ import annotations

import argparse

import numpy as np

from cwm.cli.common import (Outputs, UsageError, add_command, add_output_options, add_pair_arguments,
                            default_out, load_pair, load_predictor, run_outputs)
from cwm.cli.flow import add_max_flow

#: probes.depth.MOTIONS, repeated so that building the parser does not import torch (a test checks).
MOTIONS = ("homography", "affine", "similarity", "none")

EXAMPLES = """\
cwm depth demos/assets/stereo_left.png demos/assets/stereo_right.png --stereo
cwm depth demos/assets/sample.mp4 --gap 2                    # frames 0 and 2 of a video
cwm depth frame0.png frame1.png --motion none                # a camera that only translates
cwm depth frame0.png frame1.png --cmap magma -o out/
cwm depth left.png right.png --stereo --max-flow 40          # disparities up to 40 px
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "depth", "relative depth from parallax", EXAMPLES,
                    description="Relative depth read out of counterfactual flow: under camera motion "
                                "(or between a stereo pair) nearer surfaces move more. Writes depth.png "
                                "(colour-mapped, warm = near) and inverse_depth.npy (float32 [H, W], "
                                "larger = nearer, up to an unknown scale).")
    add_pair_arguments(p, "two images FRAME0 FRAME1 (a stereo pair: left, right), one VIDEO, or many: a "
                          "FOLDER of videos or frame folders (recursive) or a quoted 'GLOB', each to "
                          "OUT/<relative path>/ with a manifest")
    p.add_argument("--stereo", action="store_true", help="the two images are a rectified stereo pair "
                   "(frame 1 = the right view)")
    p.add_argument("--motion", choices=MOTIONS, default=None,
                   help="without --stereo: the dominant (camera) motion removed before reading parallax "
                        "(default homography; none keeps the full flow, exact for a purely translating camera)")
    add_max_flow(p.add_argument_group("probe"))
    p.add_argument("--cmap", default="turbo", choices=("turbo", "magma", "inferno", "viridis", "plasma", "jet"),
                   help="colour map of depth.png (default turbo)")
    add_output_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from cwm.cli.folders import dispatch

    code = dispatch(args, "depth", run_one)
    return run_one(args) if code is None else code


def run_one(args: argparse.Namespace) -> int:
    if args.stereo and args.motion:
        raise UsageError("depth: --motion applies without --stereo (a stereo pair has no camera motion to remove)")
    outputs = Outputs(args.out or default_out(args.inputs, "depth"), args.overwrite)
    png_path, npy_path = outputs.plan("depth.png", "inverse_depth.npy")
    f0, f1 = load_pair(args, "depth")
    outputs.check()
    predictor = load_predictor(args)  # torch: imported once the inputs are known to be good
    pair = predictor.set_pair(f0, f1, **({} if args.max_flow is None else {"max_flow": args.max_flow}))
    result = pair.depth(stereo=args.stereo, **({"motion": args.motion} if args.motion else {}))

    def body() -> None:
        outputs.image(png_path, result.visualize(cmap=args.cmap))
        outputs.array(npy_path, np.asarray(result.inverse_depth, dtype=np.float32))

    run_outputs(outputs, body)
    outputs.report()
    return 0
