"""Shared fixtures: tiny models and paths to the official golden tensors."""
from __future__ import annotations

import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine (CI, or a training job
# beside the tests) spinning threads made parallel ops 10-35x slower. Must precede torch's import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

#: Golden tensors from the official model classes, kept in the repo (see its README.md).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "official"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"official fixtures not found at {FIXTURES} (they are part of the repository)")
    return FIXTURES


@pytest.fixture
def tiny_model():
    from cwm.config import CWMConfig
    from cwm.model import build_model

    torch.manual_seed(0)
    cfg = CWMConfig(img_size=(32, 48), patch_size=8, enc_dim=32, enc_depth=2, enc_heads=2,
                    dec_dim=32, dec_depth=1, dec_heads=2)
    return build_model(cfg).eval()


def tiny_weights_and_clips(root: Path, clips: dict[str, int]) -> dict[str, Path]:
    """A tiny random model saved as ``root/tiny`` and synthetic 32x40 mp4 clips ``root/in/<name>``
    (``clips``: name -> frames; clip i is scene i): the data of the folder tests."""
    from cwm.checkpoints import save_pretrained
    from cwm.config import CWMConfig
    from cwm.io import write_video
    from cwm.model import build_model
    from cwm.synthetic import make_scene

    torch.manual_seed(0)
    cfg = CWMConfig(img_size=(32, 32), patch_size=8, enc_dim=32, enc_depth=1, enc_heads=2,
                    dec_dim=32, dec_depth=1, dec_heads=2)
    save_pretrained(build_model(cfg), root / "tiny")
    for i, (name, frames) in enumerate(clips.items()):
        (root / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / "in" / name, make_scene(i, (32, 40), num_frames=frames).frames, fps=10)
    return {"root": root, "weights": root / "tiny", "in": root / "in"}
