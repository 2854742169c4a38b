"""Write the sample data in ``demos/assets/`` from the synthetic scene generator (deterministic).

    python -m demos.make_assets              # refuses to replace existing files
    python -m demos.make_assets --overwrite

Outputs (all 128 x 128, made by :func:`cwm.synthetic.make_scene`, so exact ground truth can be
regenerated with the ``*_scene()`` functions below):
- ``sample.mp4``: 24 frames at 12 fps, H.264; three textured objects moving over a slowly panning
  background, one passing in front of another (occlusion).
- ``still.png``: one object on a textured background, for pokes and counterfactuals.
- ``stereo_left.png``, ``stereo_right.png``: a rectified stereo pair (the camera moves along +x).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cwm.synthetic import Scene, make_scene

ASSETS = Path(__file__).resolve().parent / "assets"
SIZE = (128, 128)
SAMPLE_FPS = 12.0
# Seeds and ranges were picked by eye among a few dozen: every object stays in view for the whole
# clip, they move a few pixels per frame (about what the embedded model was trained on at its
# resolution), and in the sample one object passes in front of another.
SAMPLE = dict(seed=27, num_frames=24, preset="objects", object_speed=0.022, camera_speed=0.006,
              num_objects=(2, 3), part_object_prob=0.0, object_scaling=0.005, object_rotation=2.0)
STILL = dict(seed=1, preset="objects", num_objects=(1, 2), object_radius=(0.2, 0.26), part_object_prob=0.0)
STEREO = dict(seed=1, preset="stereo")


def sample_scene() -> Scene:
    """The scene of ``sample.mp4`` (frames and ground truth: flow, occlusion, instances, depth)."""
    return make_scene(size=SIZE, **SAMPLE)


def still_scene() -> Scene:
    """The scene whose frame 0 is ``still.png``."""
    return make_scene(size=SIZE, **STILL)


def stereo_scene() -> Scene:
    """The scene whose frames 0 and 1 are ``stereo_left.png`` and ``stereo_right.png``."""
    return make_scene(size=SIZE, **STEREO)


def main(argv: list[str] | None = None) -> int:
    from cwm.io import write_image, write_video

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ASSETS, help=f"output folder (default {ASSETS})")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = parser.parse_args(argv)
    sample, still, stereo = sample_scene(), still_scene(), stereo_scene()
    written = [args.out / name for name in ("sample.mp4", "still.png", "stereo_left.png", "stereo_right.png")]
    write_video(written[0], sample.frames, fps=SAMPLE_FPS, overwrite=args.overwrite)
    write_image(written[1], still.frames[0], overwrite=args.overwrite)
    write_image(written[2], stereo.frames[0], overwrite=args.overwrite)
    write_image(written[3], stereo.frames[1], overwrite=args.overwrite)
    print(*written, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
