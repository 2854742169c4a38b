"""``cwm counterfactual``: move a few patches of an image and let the model predict the rest.

"Move the horse": each ``--move X,Y,DX,DY`` reveals, in frame 1, the patch at ``(X+DX, Y+DY)``
filled with the image shifted by ``(DX, DY)``; each ``--static X,Y`` reveals its patch unchanged.
The model fills in everything else, so a whole object follows its moved patch.
"""
from __future__ import annotations

import argparse

from cwm.cli.common import (Outputs, add_command, add_output_options, check_inside, default_out,
                            load_predictor, note_aspect, parse_move, parse_point, run_outputs)

EXAMPLES = """\
cwm counterfactual demos/assets/still.png --move 45,86,12,0
cwm counterfactual demos/assets/still.png --move 45,86,12,0 --static 10,10 --static 117,10
cwm counterfactual photo.jpg --move 120,80,0,-10 --move 200,90,5,5 -o out/
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "counterfactual", "predict what happens if a patch moves", EXAMPLES,
                    description="The motion counterfactual: move patches of an image (X,Y in pixels, "
                                "x = column, origin top-left; DX,DY the displacement), hold others "
                                "static, and predict the next frame. Writes counterfactual.png and "
                                "comparison.png (image with the moves | prediction | change).")
    p.add_argument("image", metavar="IMAGE", help="the image (frame 0)")
    p.add_argument("--move", type=parse_move, action="extend", nargs="+", required=True,
                   metavar="X,Y,DX,DY", help="move the patch at X,Y by DX,DY pixels (repeatable)")
    p.add_argument("--static", type=parse_point, action="extend", nargs="+", default=[],
                   metavar="X,Y", help="hold the patch at X,Y still (repeatable)")
    add_output_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    from cwm import viz
    from cwm.io import read_image

    outputs = Outputs(args.out or default_out([args.image], "counterfactual"), args.overwrite)
    cf_path, cmp_path = outputs.plan("counterfactual.png", "comparison.png")
    image = read_image(args.image)
    size = image.shape[:2]
    check_inside([src for src, _ in args.move], size, "--move")
    check_inside([(x + dx, y + dy) for (x, y), (dx, dy) in args.move], size, "--move target")
    check_inside(args.static, size, "--static")
    outputs.check()
    predictor = load_predictor(args)
    cf = predictor.counterfactual(image, moves=args.move, static=args.static)

    def body() -> None:
        outputs.image(cf_path, cf)
        outputs.image(cmp_path, viz.side_by_side([viz.draw_moves(image, args.move, args.static), cf,
                                                  viz.change_map(image, cf)],
                                                 ["moves", "prediction", "change"]))

    run_outputs(outputs, body)
    note_aspect(args, predictor, image.shape, "the prediction")
    outputs.report()
    return 0
