"""``cwm predict``: the factual prediction of frame 1 from frame 0 and a few revealed frame-1 patches."""
from __future__ import annotations

import argparse

from cwm.cli.common import (Outputs, add_command, add_output_options, add_pair_arguments, default_out,
                            load_pair, load_predictor, note_aspect, run_outputs, unit_fraction)

EXAMPLES = """\
cwm predict frame0.png frame1.png                      # 1% of frame-1 patches revealed
cwm predict frame0.png frame1.png --visible 0.05 --seed 3 -o out/
cwm predict demos/assets/sample.mp4 --gap 2            # frames 0 and 2 of a video
"""


def register(sub) -> argparse.ArgumentParser:
    p = add_command(sub, "predict", "predict frame 1 from frame 0 and a few revealed patches", EXAMPLES,
                    description="The factual prediction: frame 0 fully visible, a random fraction of "
                                "frame-1 patches revealed (outlined in yellow), the rest predicted. "
                                "Writes prediction.png and comparison.png (frame 0 | frame 1 | prediction).")
    add_pair_arguments(p, "two images FRAME0 FRAME1, or one VIDEO (frames 0 and --gap)")
    p.add_argument("--visible", type=unit_fraction, default=0.01,
                   help="fraction of frame-1 patches revealed, at least one (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="which random patches are revealed (default 0)")
    add_output_options(p)
    return p


def run(args: argparse.Namespace) -> int:
    outputs = Outputs(args.out or default_out(args.inputs, "predict"), args.overwrite)
    pred_path, cmp_path = outputs.plan("prediction.png", "comparison.png")
    f0, f1 = load_pair(args, "predict")
    outputs.check()
    from cwm.masking import make_mask  # torch: imported once the inputs are known to be good
    from cwm.viz import draw_patches, side_by_side

    predictor = load_predictor(args)
    # The predictor's own random policy, made explicit so the revealed patches can be drawn.
    mask = make_mask(1, predictor.num_frames, predictor.grid, 1.0 - min(args.visible, 1 - 1e-9),
                     seed=args.seed)
    last = mask[0, -predictor.grid[0] * predictor.grid[1]:]
    revealed = (~last).nonzero().flatten().tolist()
    pred = predictor.predict(f0, f1, mask=mask)

    def body() -> None:
        outputs.image(pred_path, pred)
        shown = draw_patches(f1, revealed, predictor.grid)
        outputs.image(cmp_path, side_by_side([f0, shown, pred], ["frame 0", "frame 1", "prediction"]))

    run_outputs(outputs, body)
    note_aspect(args, predictor, f0.shape, "the prediction")
    outputs.report()
    return 0
