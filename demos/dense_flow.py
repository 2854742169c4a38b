"""Demo 4, dense optical flow on the sample video.

Streams ``demos/assets/sample.mp4`` pair by pair through the flow probe and writes a video of
frame | colour-coded flow | arrows (Middlebury wheel: hue = direction, saturation = speed, white =
still, saturated at :data:`MAX_FLOW` px so that colours compare across frames), plus a PNG of four
pairs spread over the clip. The same as ``cwm flow demos/assets/sample.mp4``, in a dozen lines
of the Python API.

    python -m demos.dense_flow --out demos_out/dense_flow
"""
from __future__ import annotations

import sys

import numpy as np

from demos._common import ASSETS, load, parser, save

MAX_FLOW = 5.0  # px per frame drawn at full colour (the sample moves up to about 4.5)
FAST_PAIRS = 3
SHEET_PAIRS = 4


def main(argv: list[str] | None = None) -> int:
    from cwm import viz
    from cwm.io import open_video, write_video

    args = parser("dense_flow", __doc__).parse_args(argv)
    predictor = load(args)
    panels = []

    def frames():
        with open_video(ASSETS / "sample.mp4") as video:
            pairs = FAST_PAIRS if args.fast else video.num_frames - 1
            keep = set(np.linspace(0, pairs - 1, SHEET_PAIRS).round().astype(int).tolist())
            previous = None
            for t, frame in enumerate(video.iter_frames(max_frames=pairs + 1)):
                if previous is not None:
                    flow = predictor.flow(previous, frame).flow
                    panel = viz.side_by_side([previous, viz.flow_to_color(flow, max_flow=MAX_FLOW),
                                              viz.draw_arrows(previous, flow, step=12)])
                    if t - 1 in keep:
                        panels.append(panel)
                    print(f"pair {t - 1}: mean speed {np.linalg.norm(flow, axis=2).mean():.2f} px")
                    yield panel
                previous = frame

    path = args.out / "dense_flow.mp4"
    write_video(path, frames(), fps=6.0, overwrite=args.overwrite)
    print(path)
    save(args, "dense_flow.png", viz.side_by_side([np.concatenate(panels, axis=0), viz.flow_legend(64)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
