"""The faster pretraining step (pretrain.train.adamw, attention_for): same updates, same values."""
from __future__ import annotations

import torch

from cwm.config import CWMConfig
from cwm.model import build_model
from pretrain.train import adamw, attention_for, param_groups

CFG = CWMConfig(img_size=(32, 32), patch_size=8, enc_dim=32, enc_depth=2, enc_heads=2, dec_dim=32, dec_depth=1,
                dec_heads=2)


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 2, 32, 32, generator=g)
    mask = torch.zeros(4, 32, dtype=torch.bool)
    mask[:, 16:] = True
    mask[:, 16:20] = False
    return x, mask


def test_fused_adamw_updates_as_the_default_one():
    torch.manual_seed(0)
    a, b = build_model(CFG), build_model(CFG)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.AdamW(param_groups(a, 0.05), lr=1e-3, betas=(0.9, 0.95))
    opt_b = adamw(param_groups(b, 0.05), 1e-3, (0.9, 0.95))
    assert opt_b.defaults["fused"] is True
    x, mask = _batch()
    for _ in range(3):
        for model, opt in ((a, opt_a), (b, opt_b)):
            model(x, mask).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if name.endswith("attn.qkv.bias"):  # the k third has a zero gradient up to rounding, which
            d = p.shape[0] // 3               # Adam scales up to lr-sized steps in either optimizer
            p, q = torch.cat([p[:d], p[2 * d:]]), torch.cat([q[:d], q[2 * d:]])
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


def test_explicit_attention_only_on_cpu_bf16_and_same_values():
    torch.manual_seed(0)
    model = build_model(CFG).eval()
    x, mask = _batch()
    with torch.no_grad():
        before = model(x, mask)
    attention_for(model, "cuda", "bf16")
    attention_for(model, "cpu", "no")
    assert all(m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
    attention_for(model, "cpu", "bf16")
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    assert flags and not any(flags)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask), before, rtol=1e-5, atol=1e-6)
