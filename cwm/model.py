"""The Counterfactual World Model: a temporally factored masked autoencoder (docs/design.md §3).

Reads top to bottom like the method: patch embedding, the fixed sin-cos positional table,
encoder over visible tokens, decoder with mask tokens, and the forward pass that returns the
predicted patches of the masked tokens. Blocks are timm's; the official separate q/k/v biases are
converted at load time (:mod:`cwm.checkpoints`). The model computes predictions, never a loss.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from cwm.config import CWMConfig
from cwm.masking import patchify, unpatchify

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


def sincos_table(num_positions: int, dim: int) -> torch.Tensor:
    """The official 1-D sin-cos table over the flattened token index, regenerated exactly.

    angle(pos, j) = pos / 10000^(2*floor(j/2)/dim); sin on even j, cos on odd j (interleaved).
    Computed in float64 with numpy, as the official code does, then cast to float32.

    Returns:
        ``[1, num_positions, dim]`` float32.
    """
    if torch.get_default_device().type == "meta":  # a shape-only model (checkpoint checks)
        return torch.empty(1, num_positions, dim)
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    table = pos / np.power(10000, 2 * (j // 2) / dim)[None, :]
    table[:, 0::2] = np.sin(table[:, 0::2])
    table[:, 1::2] = np.cos(table[:, 1::2])
    return torch.from_numpy(table).float().unsqueeze(0)


def resize_pos_table(table: torch.Tensor, num_frames: int, src_grid: tuple[int, int],
                     dst_grid: tuple[int, int]) -> torch.Tensor:
    """Resize a ``[1, T*h*w, d]`` table to another patch grid, bilinearly per frame (as the official code does)."""
    if tuple(src_grid) == tuple(dst_grid):
        return table
    d = table.shape[-1]
    t = table.reshape(num_frames, *src_grid, d).permute(0, 3, 1, 2)  # (T, d, h, w)
    t = F.interpolate(t, size=dst_grid, mode="bilinear", align_corners=False)
    return t.permute(0, 2, 3, 1).reshape(1, -1, d)


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Run scaled-dot-product attention on the math backend.

    The fused CPU kernel has no forward-mode AD rule, so ``torch.func.jvp`` through the model
    needs this; the probes enter it automatically.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


class PatchEmbed(nn.Module):
    """Conv3d with kernel = stride = (1, p, p): ``[B, 3, T, H, W] -> [B, T*h*w, dim]``."""

    def __init__(self, patch_size: int, dim: int, in_chans: int = 3):
        super().__init__()
        self.proj = nn.Conv3d(in_chans, dim, kernel_size=(1, patch_size, patch_size),
                              stride=(1, patch_size, patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def _blocks(dim: int, depth: int, heads: int, mlp_ratio: float) -> nn.ModuleList:
    # qkv_bias=True gives one full qkv bias; official q_bias/k_bias/v_bias are concatenated into it.
    return nn.ModuleList(Block(dim, heads, mlp_ratio, qkv_bias=True, norm_layer=LayerNorm)
                         for _ in range(depth))


class Encoder(nn.Module):
    """Patch embedding plus pre-norm ViT blocks over the visible tokens only."""

    def __init__(self, cfg: CWMConfig):
        super().__init__()
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.enc_dim)
        self.blocks = _blocks(cfg.enc_dim, cfg.enc_depth, cfg.enc_heads, cfg.mlp_ratio)
        self.norm = LayerNorm(cfg.enc_dim)

    def embed_visible(self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """The patch embedding of the visible tokens only: ``[B, N_vis, enc_dim]``, the same values
        as embedding every token and keeping the visible ones (the projection as one matmul over
        the visible patches, laid out ``(c, i, j)`` like the Conv3d weight)."""
        proj = self.patch_embed.proj
        b, c, t, hh, ww = x.shape
        p = proj.kernel_size[-1]
        h, w = hh // p, ww // p
        patches = x.reshape(b, c, t, h, p, w, p).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, t * h * w, c * p * p)
        vis = ~mask
        tokens = F.linear(patches[vis], proj.weight.reshape(proj.out_channels, -1), proj.bias)  # (B*N_vis, D)
        # pos in the input's dtype, as the full path adds it (float32 tokens under autocast)
        return tokens.reshape(b, -1, proj.out_channels) + pos.to(x.dtype).expand(b, -1, -1)[vis].reshape(
            b, -1, proj.out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, visible_only: bool = False) -> torch.Tensor:
        """``x [B, 3, T, H, W]``, ``mask [B, N]`` -> visible tokens ``[B, N_vis, enc_dim]``.

        ``visible_only`` embeds only the visible patches (:meth:`embed_visible`; the same values).
        """
        if visible_only:
            tokens = self.embed_visible(x, mask, pos)
        else:
            tokens = self.patch_embed(x) + pos.to(x.dtype)  # (B, N, D)
            b, _, d = tokens.shape
            tokens = tokens[~mask].reshape(b, -1, d)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)


def last_rows(blk: Block, x: torch.Tensor, m: int) -> torch.Tensor:
    """A timm ``Block`` on ``x [B, N, D]`` returning its last ``m`` rows only: ``[B, m, D]``.

    Equal to ``blk(x)[:, -m:]``: keys and values are computed from every row, the queries,
    attention output, projection, MLP and residuals only for the last ``m`` rows.
    """
    attn = blk.attn
    b, n, d = x.shape
    y = blk.norm1(x)
    w, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(y[:, n - m:], w[:d], None if bias is None else bias[:d])  # (B, m, D)
    kv = F.linear(y, w[d:], None if bias is None else bias[d:])  # (B, N, 2D)
    q = attn.q_norm(q.reshape(b, m, attn.num_heads, attn.head_dim).transpose(1, 2))  # (B, H, m, hd)
    k, v = kv.reshape(b, n, 2, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    k = attn.k_norm(k)
    if attn.fused_attn:
        o = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    else:
        o = attn.attn_drop(((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)) @ v
    o = attn.norm(o.transpose(1, 2).reshape(b, m, -1))
    if getattr(attn, "gate", None) is not None:
        o = o * attn.gate(y[:, n - m:]).sigmoid()
    r = x[:, n - m:] + blk.drop_path1(blk.ls1(attn.proj_drop(attn.proj(o))))
    return r + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(r))))


class Decoder(nn.Module):
    """Pre-norm ViT blocks, LayerNorm and a linear head to ``3*p*p`` pixels per token."""

    def __init__(self, cfg: CWMConfig):
        super().__init__()
        self.blocks = _blocks(cfg.dec_dim, cfg.dec_depth, cfg.dec_heads, cfg.mlp_ratio)
        self.norm = LayerNorm(cfg.dec_dim)
        self.head = nn.Linear(cfg.dec_dim, 3 * cfg.patch_size**2)

    def forward(self, tokens: torch.Tensor, num_out: int, rows_only: bool = False) -> torch.Tensor:
        """``tokens [B, N_in, dec_dim]`` -> predictions for the last ``num_out`` tokens ``[B, num_out, 3*p*p]``.

        ``rows_only`` runs the last block's queries, output projection and MLP on those
        ``num_out`` rows only (:func:`last_rows`; keys and values still come from every row),
        the same values, for less work.
        """
        last = len(self.blocks) - 1 if rows_only else len(self.blocks)
        for blk in self.blocks[:last]:
            tokens = blk(tokens)
        if rows_only:
            tokens = last_rows(self.blocks[last], tokens, num_out)
        return self.head(self.norm(tokens[:, tokens.shape[1] - num_out:]))


class CWM(nn.Module):
    """Two-or-more-frame masked autoencoder; the last frame is the predicted one.

    ``forward(x, mask)`` has the official semantics: ``x [B, 3, T, H, W]`` ImageNet-normalised,
    ``mask [B, T*h*w]`` bool (True = masked, the same count in every sample), returns
    ``[B, N_masked, 3*p*p]``: predicted RGB in [0, 1] of the masked tokens in ascending token order.
    Any T >= 2 and any size divisible by the patch size work (see :meth:`pos_tables`).

    ``skip_unused_rows`` (off by default; :func:`pretrain.step.setup_for_training` turns it on)
    makes training-mode forwards skip work whose result the output never reads: the patch
    embedding of masked tokens, and the last decoder block's queries, projection and MLP on the
    visible rows. The returned predictions are the same (to rounding); eval mode never skips.
    """

    def __init__(self, cfg: CWMConfig):
        super().__init__()
        self.cfg = cfg
        self.skip_unused_rows = False
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.encoder_to_decoder = nn.Linear(cfg.enc_dim, cfg.dec_dim, bias=cfg.k_bias)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.dec_dim))
        # Fixed tables, never stored in checkpoints (persistent=False), regenerated exactly.
        n = cfg.num_tokens
        self.register_buffer("enc_pos", sincos_table(n, cfg.enc_dim), persistent=False)
        self.register_buffer("dec_pos", sincos_table(n, cfg.dec_dim), persistent=False)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1, 1), persistent=False)
        self._pos_cache: dict = {}
        self._init_weights()

    def _init_weights(self) -> None:
        # MAE-style init: xavier-uniform linears and patch projection, zero biases, small mask token.
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        w = self.encoder.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.mask_token, std=0.02)

    def grid_of(self, x: torch.Tensor) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of a ``[B, 3, T, H, W]`` input."""
        p = self.cfg.patch_size
        return x.shape[-2] // p, x.shape[-1] // p

    def pos_tables(self, num_frames: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder and decoder tables ``[1, T*h*w, d]`` for a clip of this length and grid.

        At the built resolution (or when it is unknown) the table is regenerated exactly for
        ``T*h*w`` tokens; at another resolution the built grid's table is resized per frame.
        """
        cfg, grid = self.cfg, tuple(grid)
        key = (num_frames, grid)
        if cfg.img_size is not None and key == (cfg.num_frames, cfg.grid):
            return self.enc_pos, self.dec_pos
        if key not in self._pos_cache:
            src = grid if (cfg.img_size is None or grid == cfg.grid) else cfg.grid
            n = num_frames * src[0] * src[1]
            self._pos_cache[key] = tuple(resize_pos_table(sincos_table(n, d), num_frames, src, grid)
                                         for d in (cfg.enc_dim, cfg.dec_dim))
        return tuple(t.to(self.enc_pos.device) for t in self._pos_cache[key])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Predicted patches of the masked tokens: ``[B, N_masked, 3*p*p]`` (see class docstring)."""
        enc_pos, dec_pos = self.pos_tables(x.shape[2], self.grid_of(x))
        skip = self.skip_unused_rows and self.training
        vis = self.encoder_to_decoder(self.encoder(x, mask, enc_pos, visible_only=skip))  # (B, N_vis, Dd)
        b, _, d = vis.shape
        pos = dec_pos.to(vis.dtype).expand(b, -1, -1)
        pos_vis, pos_masked = pos[~mask].reshape(b, -1, d), pos[mask].reshape(b, -1, d)
        tokens = torch.cat([vis + pos_vis, self.mask_token.to(vis.dtype) + pos_masked], dim=1)
        return self.decoder(tokens, pos_masked.shape[1], rows_only=skip)

    def predict_frame(self, video: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The "full last frame" mode: the whole predicted last frame, in RGB [0, 1].

        Args:
            video: ``[B, 3, T, H, W]`` RGB in [0, 1] (not normalised; this method normalises).
            mask: ``[B, T*h*w]`` True = masked; only the last frame may hold masked tokens.
        Returns:
            ``[B, 3, H, W]``: the decoder's prediction on masked patches and the input's pixels on
            the visible ones, so the result depends on frame 0 through the prediction only.
        """
        grid = self.grid_of(video)
        n = grid[0] * grid[1]
        last_mask = mask[:, -n:]
        if mask[:, :-n].any():
            raise ValueError("predict_frame needs every masked token to be in the last frame")
        pred = self((video - self.mean) / self.std, mask)  # (B, N_masked, 3pp)
        patches = patchify(video[:, :, -1], self.cfg.patch_size).to(pred.dtype)  # (B, n, 3pp)
        # Masked token j of the last frame is prediction number (rank of j among masked tokens);
        # a gather (not masked_scatter) keeps this cheap under vmap and forward-mode AD.
        rank = (last_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, n)
        scattered = pred.gather(1, rank[..., None].expand(-1, -1, pred.shape[-1]))
        patches = torch.where(last_mask[..., None], scattered, patches)
        return unpatchify(patches, self.cfg.patch_size, grid)


def build_model(cfg: CWMConfig) -> CWM:
    """The one builder used everywhere (variants, checkpoints, training)."""
    return CWM(cfg)
