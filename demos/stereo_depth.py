"""Demo 6, depth from a stereo pair.

The flow probe between the left and right views gives disparity, which is inversely
proportional to depth: near surfaces shift more. The figure shows both views, the estimated
inverse depth and the ground truth (warm = near); the printout gives the ordinal accuracy on
random point pairs, the lab's depth protocol.

    python -m demos.stereo_depth --out demos_out/stereo_depth
"""
from __future__ import annotations

import sys

import numpy as np

from demos._common import load, parser, save
from demos.make_assets import stereo_scene


def main(argv: list[str] | None = None) -> int:
    from cwm import viz
    from cwm.metrics import depth_ordinal_accuracy

    args = parser("stereo_depth", __doc__).parse_args(argv)
    predictor = load(args)
    scene = stereo_scene()
    left, right = scene.pair(0)
    inverse_depth = np.asarray(predictor.depth(left, right, stereo=True).inverse_depth, np.float32)
    accuracy = depth_ordinal_accuracy(inverse_depth, scene.depth[0])
    print(f"ordinal accuracy {accuracy:.3f} (0.5 is chance)")
    panels = [left, right, viz.depth_to_color(inverse_depth), viz.depth_to_color(scene.inverse_depth(0))]
    figure = viz.side_by_side(panels, ["left", "right", "estimate", "truth"])
    save(args, "stereo_depth.png", figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
