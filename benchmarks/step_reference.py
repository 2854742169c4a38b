"""The pretraining step in the official style, and ours, on the same weights, masks and batch.

The reference is the official CWM pretraining model and step (neuroailab/cwm_dynamics
``cwm/model/model_pretrain.py``, ``model_utils.py``, ``engine_for_pretraining.py``; rewritten
here, not copied): a bias-free qkv weight with separate q and v biases and a zero k bias
concatenated on every call, ``F.scaled_dot_product_attention``, every patch embedded and the
visible ones kept, detached clones of the position tables (the decoder's cast to the input
clip's dtype, so its tokens are float32 under autocast), the decoder over all tokens and the
head on the masked ones; the labels patchified from the un-normalised clip in each step;
``torch.optim.AdamW`` with its defaults (one tensor at a time on a CPU). Ours is
:class:`cwm.model.CWM` set up by :func:`pretrain.step.setup_for_training` (``skip_unused_rows``:
only visible patches embedded, the last decoder block's queries and MLP only on the predicted
rows; explicit attention matmuls on a CPU under bf16) with the fused AdamW
(:func:`pretrain.step.adamw`), as ``pretrain.train`` runs it, and, as an option,
``torch.compile``. Both: masked-patch MSE, clipping at 1.0 (the official engine computes the
gradient norm without clipping; clipping in both keeps the losses comparable), weight decay 0.05
on matrices only. :func:`copy_weights` loads our weights into the reference, so the first losses
agree (checked by :func:`make_steps`).
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from cwm.config import CWMConfig
from cwm.masking import patchify
from cwm.model import build_model, sincos_table
from pretrain.objective import mask_from_noise, masked_mse, masked_targets
from pretrain.step import adamw, param_groups, setup_for_training

#: The issue's comparison shape: encoder 192x6, decoder 128x2, 64 px, patch 8, two frames.
SHAPE = CWMConfig(img_size=(64, 64), patch_size=8, enc_dim=192, enc_depth=6, enc_heads=3,
                  dec_dim=128, dec_depth=2, dec_heads=4)


class RefAttention(nn.Module):
    """The official ``Attention``: one bias-free qkv weight, separate q and v biases with a zero k
    bias concatenated between them on every call, PyTorch's ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias, requires_grad=False), self.v_bias))
        qkv = F.linear(input=x, weight=self.qkv.weight, bias=bias)
        qkv = qkv.reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], dropout_p=0.0)
        return self.proj(x.transpose(1, 2).reshape(b, n, -1))


class RefBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn = RefAttention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefCWM(nn.Module):
    def __init__(self, cfg: CWMConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = nn.Conv3d(3, cfg.enc_dim, (1, cfg.patch_size, cfg.patch_size), (1, cfg.patch_size, cfg.patch_size))
        self.enc = nn.ModuleList(RefBlock(cfg.enc_dim, cfg.enc_heads, cfg.mlp_ratio) for _ in range(cfg.enc_depth))
        self.enc_norm = nn.LayerNorm(cfg.enc_dim, eps=1e-6)
        self.encoder_to_decoder = nn.Linear(cfg.enc_dim, cfg.dec_dim, bias=cfg.k_bias)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_dim))
        self.dec = nn.ModuleList(RefBlock(cfg.dec_dim, cfg.dec_heads, cfg.mlp_ratio) for _ in range(cfg.dec_depth))
        self.dec_norm = nn.LayerNorm(cfg.dec_dim, eps=1e-6)
        self.head = nn.Linear(cfg.dec_dim, 3 * cfg.patch_size**2)
        self.register_buffer("enc_pos", sincos_table(cfg.num_tokens, cfg.enc_dim), persistent=False)
        self.register_buffer("dec_pos", sincos_table(cfg.num_tokens, cfg.dec_dim), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Encoder (official CWMEncoder.forward_features): embed every token, add a detached clone
        # of the table cast to the embedding's dtype, keep the visible rows.
        x_in = x
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = x + self.enc_pos.type_as(x).to(x.device).clone().detach()
        b, _, c = x.shape
        x = x[~mask].reshape(b, -1, c)
        for blk in self.enc:
            x = blk(x)
        x = self.encoder_to_decoder(self.enc_norm(x))
        # Decoder input (official CWM.forward): the table is cast to the *input clip's* dtype, so
        # under autocast the decoder's tokens are float32, as there.
        b, _, d = x.shape
        pos = self.dec_pos.expand(b, -1, -1).type_as(x_in).to(x_in.device).clone().detach()
        vis, masked = pos[~mask].reshape(b, -1, d), pos[mask].reshape(b, -1, d)
        x = torch.cat([x + vis, self.mask_token + masked], dim=1)
        for blk in self.dec:
            x = blk(x)
        return self.head(self.dec_norm(x[:, -masked.shape[1]:]))


def copy_weights(ours: nn.Module, ref: RefCWM) -> None:
    """Our weights into the reference (qkv bias split into q and v; our k bias must be zero)."""
    src = dict(ours.named_parameters())
    with torch.no_grad():
        ref.patch_embed.weight.copy_(src["encoder.patch_embed.proj.weight"])
        ref.patch_embed.bias.copy_(src["encoder.patch_embed.proj.bias"])
        for part, blocks in (("encoder", ref.enc), ("decoder", ref.dec)):
            for i, blk in enumerate(blocks):
                p = f"{part}.blocks.{i}."
                for name in ("norm1", "norm2"):
                    getattr(blk, name).weight.copy_(src[p + f"{name}.weight"])
                    getattr(blk, name).bias.copy_(src[p + f"{name}.bias"])
                blk.attn.qkv.weight.copy_(src[p + "attn.qkv.weight"])
                q, k, v = src[p + "attn.qkv.bias"].chunk(3)
                assert not k.any(), "the official attention has no k bias"
                blk.attn.q_bias.copy_(q)
                blk.attn.v_bias.copy_(v)
                blk.attn.proj.weight.copy_(src[p + "attn.proj.weight"])
                blk.attn.proj.bias.copy_(src[p + "attn.proj.bias"])
                for j, name in ((0, "fc1"), (2, "fc2")):
                    blk.mlp[j].weight.copy_(src[p + f"mlp.{name}.weight"])
                    blk.mlp[j].bias.copy_(src[p + f"mlp.{name}.bias"])
        for mine, theirs in ((ref.enc_norm, "encoder.norm"), (ref.dec_norm, "decoder.norm"), (ref.head, "decoder.head"),
                             (ref.encoder_to_decoder, "encoder_to_decoder")):
            mine.weight.copy_(src[theirs + ".weight"])
            if mine.bias is not None:
                mine.bias.copy_(src[theirs + ".bias"])
        ref.mask_token.copy_(src["mask_token"])


def make_steps(cfg: CWMConfig = SHAPE, batch: int = 32, ratio: float = 0.9, precision: str = "no",
               compile_: bool = False, device: str = "cpu") -> dict:
    """``{"official": step, "ours": step}``: closures running one optimizer step each and
    returning the loss; the same weights, batch and mask. Raises if the first losses differ."""
    torch.manual_seed(0)
    ours = build_model(cfg).to(device).train()
    ref = RefCWM(cfg).to(device).train()
    copy_weights(ours, ref)
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(batch, 3, cfg.num_frames, *cfg.img_size, generator=g).to(device)
    mean = torch.tensor(cfg.mean, device=device).view(1, 3, 1, 1, 1)
    std = torch.tensor(cfg.std, device=device).view(1, 3, 1, 1, 1)
    x = (rgb - mean) / std
    mask = mask_from_noise(torch.rand(batch, cfg.grid[0] * cfg.grid[1], generator=g).to(device), cfg.num_frames, ratio)
    dtype = {"bf16": torch.bfloat16}.get(precision)
    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=dtype)) if dtype else contextlib.nullcontext

    def official_labels() -> torch.Tensor:  # engine_for_pretraining: un-normalise, patchify all frames, keep masked
        with torch.no_grad():
            video = (x * std + mean).transpose(1, 2)  # (B, T, 3, H, W)
            patches = patchify(video.flatten(0, 1), cfg.patch_size).reshape(batch, -1, 3 * cfg.patch_size**2)
            return patches[mask].reshape(batch, -1, patches.shape[-1])

    def our_labels() -> torch.Tensor:  # pretrain.loop: the masked patches of the last frame
        return masked_targets(rgb[:, :, -1], mask, cfg.patch_size)

    def stepper(model, forward, opt, labels, foreach_clip: bool):
        def step() -> float:
            target = labels()
            with autocast():
                loss = masked_mse(forward(x, mask), target)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=foreach_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss.detach())
        return step

    ref_opt = torch.optim.AdamW(param_groups(ref, 0.05), lr=1e-4, betas=(0.9, 0.95))
    our_opt = adamw(param_groups(ours, 0.05), 1e-4, (0.9, 0.95))  # as pretrain.train builds it
    setup_for_training(ours, torch.device(device).type, precision)
    forward = torch.compile(ours) if compile_ else ours
    with torch.no_grad(), autocast():
        a, b = float(masked_mse(ref(x, mask), official_labels())), float(masked_mse(ours(x, mask), our_labels()))
    tol = 1e-5 if dtype is None else 2e-2
    if not math.isclose(a, b, rel_tol=tol):
        raise AssertionError(f"official-style and our losses differ on the same weights: {a} vs {b}")
    return {"official": stepper(ref, ref, ref_opt, official_labels, False),
            "ours": stepper(ours, forward, our_opt, our_labels, True),
            "first_loss": a}
