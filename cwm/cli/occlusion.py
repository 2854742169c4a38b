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
cwm occlusion demos/assets/sample.mp4                 # -> cwm_out/sample_occlusion/occlusion.mp4 + raw/*.npy
cwm occlusion demos/assets/sample.mp4 --format png --every 8
cwm occlusion frame0.png frame1.png -o out/           # -> out/occlusion.png + out/occlusion.npy
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "occlusion", "occlusion masks of a video or a frame pair", EXAMPLES,
                    description="Occlusion read out of the CWM: frame-0 pixels that are not visible in "
                                "frame 1, drawn in magenta over frame 0; raw masks are bool [H, W] "
                                ".npy files (True = occluded).")
    add_source_arguments(p)
    add_probe_arguments(p)
    add_visual_arguments(p, OCCLUSION.formats)
    add_output_options(p)
    return p


def _visual(frame0: np.ndarray, result, args) -> np.ndarray:
    from cwm import viz

    overlay = viz.occlusion_overlay(frame0, result.occlusion)
    return overlay if args.layout == "single" else viz.side_by_side([frame0, overlay])


OCCLUSION = Kind("occlusion", ("mp4", "png", "npy"), raw=lambda r: np.asarray(r.occlusion, dtype=bool),
                 visual=_visual)


def run(args: argparse.Namespace) -> int:
    return run_dense(args, OCCLUSION)
