"""``cwm occlusion``: which frame-0 pixels are hidden in frame 1, for a video or a frame pair.

Runs the flow probe (the same engine as ``cwm flow``) and keeps its occlusion map: a pixel is
occluded when its counterfactual response in frame 1 is weak (docs/design.md §4).
"""
from __future__ import annotations

import argparse

import numpy as np

from cwm.cli.common import add_command, add_output_options
from cwm.cli.flow import Kind, add_probe_arguments, add_source_arguments, add_visual_arguments, run_dense

EXAMPLES = """\
cwm occlusion demos/assets/sample.mp4                 # -> cwm_out/sample_occlusion/occlusion.mp4 + occlusion.npz
cwm occlusion demos/assets/sample.mp4 --format png --every 8
cwm occlusion frame0.png frame1.png -o out/           # -> out/occlusion.png + out/occlusion.npy
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "occlusion", "occlusion masks of a video or a frame pair", EXAMPLES,
                    description="Occlusion read out of the CWM: frame-0 pixels that are not visible in "
                                "frame 1, drawn in magenta over frame 0; raw masks are bool [H, W] "
                                "(True = occluded), with the probe's confidence, in occlusion.npz "
                                "(or .npy files, see --raw).")
    add_source_arguments(p)
    add_probe_arguments(p)
    add_visual_arguments(p, OCCLUSION, "occlusion_<t> [H, W] bool (True = occluded) and confidence_<t> "
                                       "[H, W] float32 in [0, 1]")
    add_output_options(p)
    return p


def _visual(frame0: np.ndarray, result, args) -> np.ndarray:
    from cwm import viz

    overlay = viz.occlusion_overlay(frame0, result.occlusion)
    return overlay if args.layout == "single" else viz.side_by_side([frame0, overlay])


OCCLUSION = Kind("occlusion", ("mp4", "png", "raw", "npy"), raw=lambda r: np.asarray(r.occlusion, dtype=bool),
                 arrays=lambda r: {"occlusion": np.asarray(r.occlusion, bool),
                                   "confidence": np.asarray(r.confidence, np.float32)},
                 visual=_visual)


def run(args: argparse.Namespace) -> int:
    return run_dense(args, OCCLUSION)
