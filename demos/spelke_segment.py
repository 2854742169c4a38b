"""Demo 5, a Spelke segment from one poke.

Poke the still image at one point (a virtual push of that patch), see what moves along with it,
and keep that as the segment: a Spelke object, defined by what moves together rather than by
colour. The figure shows the poke, the segment and the ground-truth object; the printout gives
their IoU.

    python -m demos.spelke_segment --out demos_out/spelke_segment
"""
from __future__ import annotations

import sys

import numpy as np

from demos._common import load, parser, save
from demos.counterfactual_motion import poke_point
from demos.make_assets import still_scene


def main(argv: list[str] | None = None) -> int:
    from cwm import viz
    from cwm.metrics import point_iou

    args = parser("spelke_segment", __doc__).parse_args(argv)
    predictor = load(args)
    scene = still_scene()
    image, instances = scene.frames[0], scene.instances[0]
    point = poke_point(instances)
    options = {"directions": 1} if args.fast else {}
    mask = np.asarray(predictor.segment(image, points=[point], **options).masks[0], dtype=bool)
    print(f"poke at {point}: segment of {mask.sum()} px, IoU with the object {point_iou(mask, instances, point):.2f}")
    poked = viz.points_overlay(image, np.array([point]), colors=(255, 0, 0), radius=3)
    truth = instances == instances[int(point[1]), int(point[0])]
    figure = viz.side_by_side([poked, viz.overlay_mask(image, mask, (255, 0, 0)),
                               viz.overlay_mask(image, truth, (0, 200, 0))], ["poke", "segment", "object"])
    save(args, "spelke_segment.png", figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
