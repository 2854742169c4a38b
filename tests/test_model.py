"""The model: exact equivalence to the official releases, every variant, forward-mode AD."""
from __future__ import annotations

import json

import pytest
import torch

import cwm
from cwm.config import VARIANTS, CWMConfig
from cwm.masking import make_mask
from cwm.model import build_model, math_attention, sincos_table

CASES = ["cwm2023_2frame", "eccv2024_2frame_kbias0", "eccv2024_2frame_kbias1", "eccv2024_3frame_kbias1"]


@pytest.mark.parametrize("name", CASES)
def test_official_golden_tensors(fixtures_dir, name):
    info = json.loads((fixtures_dir / "index.json").read_text())[name]
    heads = (info["encoder"][2], info["decoder"][2])  # not recoverable from shapes
    predictor = cwm.load(str(fixtures_dir / f"{name}.pth"), device="cpu", heads=heads)
    io = torch.load(fixtures_dir / f"{name}.io.pt", weights_only=True)
    with torch.no_grad():
        y = predictor.model(io["x"], io["mask"])
    assert y.shape == io["y"].shape
    assert (y - io["y"]).abs().max().item() < 1e-5
    # The architecture came from keys and shapes alone.
    cfg = predictor.config
    assert (cfg.enc_dim, cfg.enc_depth, cfg.dec_dim, cfg.dec_depth) == (*info["encoder"][:2], *info["decoder"][:2])
    assert cfg.patch_size == info["patch_size"] and cfg.k_bias == info.get("k_bias", False)


def test_sincos_table_matches_formula():
    t = sincos_table(7, 6)[0].double()
    pos, j = 5, 3  # odd j -> cos, exponent uses 2*floor(j/2)
    assert t[pos, j].item() == pytest.approx(torch.cos(torch.tensor(pos / 10000 ** (2 * 1 / 6), dtype=torch.float64)).item(), abs=1e-7)
    assert t[pos, 2].item() == pytest.approx(torch.sin(torch.tensor(pos / 10000 ** (2 * 1 / 6), dtype=torch.float64)).item(), abs=1e-7)
    assert t[0, 0] == 0 and t[0, 1] == 1


def _tiny(cfg: CWMConfig) -> CWMConfig:
    """The same architecture family, shrunk: keeps patch size, frame count and k_bias."""
    return cfg.replace(img_size=(4 * cfg.patch_size, 4 * cfg.patch_size), enc_dim=16, enc_depth=1, enc_heads=2,
                       dec_dim=16, dec_depth=1, dec_heads=2)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_forward_backward_jvp(name):
    torch.manual_seed(0)
    cfg = _tiny(VARIANTS[name])
    model = build_model(cfg).double()
    t, (h, w) = cfg.num_frames, cfg.img_size
    x = torch.randn(2, 3, t, h, w, dtype=torch.float64)
    mask = make_mask(2, t, cfg.grid, 0.75, seed=1)
    y = model(x, mask)
    assert y.shape == (2, int(mask[0].sum()), 3 * cfg.patch_size**2)
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.isfinite(y).all()

    # Forward-mode AD through attention matches central finite differences.
    model.zero_grad()
    video = torch.rand(1, 3, t, h, w, dtype=torch.float64)
    m1 = mask[:1]
    tangent = torch.randn(1, 3, h, w, dtype=torch.float64)

    def f(frame0):
        frames = [frame0] * (t - 1) + [video[:, :, -1]]
        return model.predict_frame(torch.stack(frames, 2), m1)

    with math_attention(), torch.no_grad():
        _, jv = torch.func.jvp(f, (video[:, :, 0],), (tangent,))
        eps = 1e-6
        fd = (f(video[:, :, 0] + eps * tangent) - f(video[:, :, 0] - eps * tangent)) / (2 * eps)
    rel = (jv - fd).norm() / fd.norm()
    assert rel < 1e-3


def test_other_resolution_and_frame_count(tiny_model):
    """Inputs at another size get the table resized per frame; T=3 works on a 2-frame model."""
    x = torch.randn(1, 3, 3, 64, 40)
    mask = make_mask(1, 3, (8, 5), 0.9, seed=0)
    y = tiny_model(x, mask)
    assert y.shape == (1, int(mask.sum()), 192) and torch.isfinite(y).all()


def test_predict_frame_keeps_visible_pixels(tiny_model):
    video = torch.rand(2, 3, 2, 32, 48)
    mask = make_mask(2, 2, (4, 6), 0.5, seed=3)
    out = tiny_model.predict_frame(video, mask)
    assert out.shape == (2, 3, 32, 48)
    vis = ~mask[:, 24:].view(2, 4, 6)
    pix = vis.repeat_interleave(8, 1).repeat_interleave(8, 2)[:, None].expand(-1, 3, -1, -1)
    assert torch.equal(out[pix], video[:, :, 1][pix])
