"""What every demo shares: its command line, the predictor, and writing figures."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"


def parser(name: str, doc: str) -> argparse.ArgumentParser:
    """``--out``, ``--fast``, ``--weights``, ``--device`` and ``--overwrite``."""
    p = argparse.ArgumentParser(prog=f"python -m demos.{name}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demos_out") / name, help="output folder (default demos_out/NAME)")
    p.add_argument("--fast", action="store_true", help="a quick, smaller run (used by the tests)")
    p.add_argument("--weights", default="default", help="weights name or path (default: the embedded model)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if available)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def load(args: argparse.Namespace):
    import cwm

    return cwm.load(args.weights, device=args.device)


def save(args: argparse.Namespace, name: str, image: np.ndarray) -> Path:
    """Write ``image`` as ``args.out/name`` (atomically; refuses to replace without --overwrite)."""
    from cwm.errors import OutputExistsError
    from cwm.io import write_image

    path = args.out / name
    try:
        write_image(path, image, overwrite=args.overwrite)
    except OutputExistsError:  # the library names overwrite=True; a demo's user has the flag
        raise OutputExistsError(f"'{path}' already exists; pass --overwrite to replace it", path) from None
    print(path)
    return path


def sample_pair(gap: int = 1, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``start`` and ``start + gap`` of ``assets/sample.mp4``."""
    from cwm.io import open_video

    with open_video(ASSETS / "sample.mp4", min_frames=start + gap + 1) as video:
        f0, f1 = video.get([start, start + gap])
    return f0, f1
