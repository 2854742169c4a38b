"""The faster pretraining step (pretrain.step: adamw, attention_for, skip_unused_rows): same updates, same values."""
from __future__ import annotations

import torch

from cwm.config import CWMConfig
from cwm.model import build_model, last_rows
from pretrain.step import adamw, attention_for, param_groups

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


def _rows_pair(dtype):
    cfg = CWMConfig(img_size=(32, 32), patch_size=8, enc_dim=32, enc_depth=2, enc_heads=2, dec_dim=32,
                    dec_depth=2, dec_heads=2)
    torch.manual_seed(0)
    model = build_model(cfg).to(dtype).train()
    with torch.no_grad():  # non-zero biases and norm weights, so every term is exercised
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 2, 32, 32, generator=g, dtype=dtype)
    noise = torch.rand(3, 16, generator=g)
    mask = torch.ones(3, 32, dtype=torch.bool)
    mask[:, :16] = False
    mask[:, 16:] = True
    mask[:, 16:].scatter_(1, noise.argsort(1)[:, :5], False)  # 5 visible in the last frame, 11 masked
    return model, x, mask


def _forward_grads(model, x, mask, skip: bool):
    model.skip_unused_rows = skip
    pred = model(x, mask)
    target = torch.linspace(0, 1, pred.numel(), dtype=pred.dtype).reshape(pred.shape)
    grads = torch.autograd.grad((pred - target).square().mean(), list(model.parameters()))
    return pred.detach(), grads


def test_skip_unused_rows_same_predictions_and_gradients():
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        model, x, mask = _rows_pair(dtype)
        full, g_full = _forward_grads(model, x, mask, skip=False)
        fast, g_fast = _forward_grads(model, x, mask, skip=True)
        assert full.shape == fast.shape == (3, 11, 192)
        scale = full.abs().max()
        torch.testing.assert_close(fast, full, rtol=tol, atol=tol * scale)
        for (name, _), a, b in zip(model.named_parameters(), g_full, g_fast):
            torch.testing.assert_close(b, a, rtol=tol, atol=tol * max(a.abs().max(), 1e-3), msg=name)


def test_skip_unused_rows_is_training_only_and_takes_the_short_path(monkeypatch):
    import cwm.model as model_module

    model, x, mask = _rows_pair(torch.float32)
    model.skip_unused_rows = True
    calls = []
    original = model_module.last_rows
    monkeypatch.setattr(model_module, "last_rows", lambda *a: calls.append(1) or original(*a))
    model.eval()
    with torch.no_grad():
        model(x, mask)
    assert calls == []  # eval mode never skips
    model.train()
    model(x, mask)
    assert calls == [1]


def test_last_rows_equals_the_block_on_every_row_explicit_attention():
    model, x, _ = _rows_pair(torch.float64)
    blk = model.decoder.blocks[-1]
    tokens = torch.randn(2, 9, 32, dtype=torch.float64)
    for fused in (True, False):
        blk.attn.fused_attn = fused
        torch.testing.assert_close(last_rows(blk, tokens, 4), blk(tokens)[:, -4:], rtol=1e-12, atol=1e-12)


def test_skip_unused_rows_keeps_the_dtypes_under_bf16_autocast():
    model, x, mask = _rows_pair(torch.float32)
    pos = model.enc_pos[:, :32]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full_tokens = model.encoder(x, mask, pos)
        fast_tokens = model.encoder(x, mask, pos, visible_only=True)
        full = model(x, mask)
        model.skip_unused_rows = True
        fast = model(x, mask)
    assert fast_tokens.dtype == full_tokens.dtype  # the residual stream stays float32, as on the full path
    assert fast.dtype == full.dtype
    torch.testing.assert_close(fast_tokens, full_tokens, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(fast.float(), full.float(), rtol=2e-2, atol=2e-2)


def test_setup_for_training_turns_the_skip_on():
    from pretrain.step import setup_for_training

    model = build_model(CFG)
    assert model.skip_unused_rows is False
    setup_for_training(model, "cpu", "no")
    assert model.skip_unused_rows is True
    assert all(m.fused_attn for m in model.modules() if hasattr(m, "fused_attn"))
