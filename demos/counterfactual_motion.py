"""Demo 2, "move the horse": moving one patch of an object moves the whole object.

The motion counterfactual: in frame 1, reveal one patch of the object filled with frame 0 shifted
by ``d``, hold a few background patches still, and let the model predict everything else. A model
that has learned objects moves the whole object by ``d`` and leaves the background in place.
The figure shows the poke (red arrow, green static points), the counterfactual frame 1 and the
per-pixel change; the printout compares the mean change on the object and on the background.

    python -m demos.counterfactual_motion --out demos_out/counterfactual
    python -m demos.counterfactual_motion --image my.png --point 120,80 --move 10,0
"""
from __future__ import annotations

import sys

import numpy as np

from demos._common import load, parser, save
from demos.make_assets import still_scene

STATIC_INSET = 0.08  # static points sit this fraction of the image side in from each corner


def poke_point(instances: np.ndarray) -> tuple[float, float]:
    """A point deep inside the largest object (the object pixel farthest from its border)."""
    import cv2

    ids, counts = np.unique(instances[instances > 0], return_counts=True)
    mask = (instances == ids[np.argmax(counts)]).astype(np.uint8)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    y, x = np.unravel_index(np.argmax(dist), dist.shape)
    return float(x), float(y)


def corners(size: tuple[int, int], avoid: np.ndarray | None) -> list[tuple[float, float]]:
    """Points near the four corners, minus any that fall on ``avoid`` (bool ``[H, W]``)."""
    h, w = size
    dx, dy = STATIC_INSET * w, STATIC_INSET * h
    pts = [(dx, dy), (w - 1 - dx, dy), (dx, h - 1 - dy), (w - 1 - dx, h - 1 - dy)]
    return [p for p in pts if avoid is None or not avoid[int(p[1]), int(p[0])]]


def main(argv: list[str] | None = None) -> int:
    from cwm.argtypes import parse_point
    from cwm.io import read_image
    from cwm.viz import change_map, draw_moves, pixel_change, side_by_side

    p = parser("counterfactual_motion", __doc__)
    p.add_argument("--image", default=None, help="an image (default: demos/assets/still.png, made by make_assets)")
    p.add_argument("--point", type=parse_point, default=None, metavar="X,Y",
                   help="the patch to move (default: inside the still image's object)")
    p.add_argument("--move", type=parse_point, default=None, metavar="DX,DY",
                   help="displacement in pixels (default: a tenth of the width, rightward)")
    args = p.parse_args(argv)
    predictor = load(args)
    if args.image is None:  # the still asset, regenerated with its ground-truth objects
        scene = still_scene()
        image, objects = scene.frames[0], scene.instances[0] > 0
        point = args.point or poke_point(scene.instances[0])
    else:
        image, objects = read_image(args.image), None
        point = args.point or ((image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2)
    h, w = image.shape[:2]
    d = args.move or (round(w / 10), 0.0)
    static = corners((h, w), objects)
    cf = predictor.counterfactual(image, moves=[(point, d)], static=static)

    diff = pixel_change(image, cf)
    if objects is not None:
        print(f"mean change: object {diff[objects].mean():.1f}, background {diff[~objects].mean():.1f} (0..255)")
    figure = side_by_side([draw_moves(image, [(point, d)], static), cf, change_map(image, cf)],
                          ["poke", "prediction", "change"])
    save(args, "counterfactual.png", cf)
    save(args, "counterfactual_motion.png", figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
