"""Masks and patches: exact counts, determinism, partitions, exact inverses."""
from __future__ import annotations

import pytest
import torch

from cwm.errors import ConfigError
from cwm.masking import (make_mask, mask_from_visible, num_visible, partition_last_frame, patchify,
                         unpatchify)


@pytest.mark.parametrize("grid,ratio,expected", [((8, 8), 0.99, 1), ((28, 28), 0.99, 8), ((8, 8), 0.9, 6),
                                                 ((8, 8), 0.5, 32), ((4, 6), 0.75, 6), ((28, 28), 0.9, 78)])
@pytest.mark.parametrize("clump", [1, 2])
def test_visible_counts_are_exact(grid, ratio, expected, clump):
    n = grid[0] * grid[1]
    mask = make_mask(3, 2, grid, ratio, clump=clump, seed=0)
    assert mask.shape == (3, 2 * n)
    assert not mask[:, :n].any()  # frame 0 fully visible
    assert ((~mask[:, n:]).sum(1) == expected).all()
    assert num_visible(n, ratio) == expected


def test_three_frames_only_last_masked():
    mask = make_mask(2, 3, (4, 4), 0.75, seed=0)
    assert not mask[:, :32].any() and (mask[:, 32:].sum(1) == 12).all()


def test_same_seed_same_mask_and_ranges():
    a, b = make_mask(4, 2, (8, 8), 0.9, seed=7), make_mask(4, 2, (8, 8), 0.9, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, make_mask(4, 2, (8, 8), 0.9, seed=8))
    r = make_mask(4, 2, (8, 8), (0.6, 0.9), seed=1)
    k = (~r[:, 64:]).sum(1)
    assert (k == k[0]).all() and 6 <= k[0] <= 26


def test_clumps_are_2x2_blocks():
    mask = make_mask(1, 2, (8, 8), 1 - 16 / 64, clump=2, seed=0)
    vis = (~mask[0, 64:]).view(8, 8)
    blocks = vis.view(4, 2, 4, 2).sum((1, 3))
    assert set(blocks.unique().tolist()) <= {0, 4}


def test_explicit_and_partitions():
    m = mask_from_visible([[0, 5], [3, 63]], 2, (8, 8))
    assert (~m[0]).nonzero().flatten().tolist() == list(range(64)) + [64, 69]
    parts = partition_last_frame(5, (8, 8), seed=0)
    assert parts.shape == (5, 64)
    assert (parts.sum(0) == 1).all()  # disjoint and covering
    assert parts.sum(1).max() - parts.sum(1).min() <= 1
    with pytest.raises(ConfigError):
        mask_from_visible([[0], [1, 2]], 2, (8, 8))
    with pytest.raises(ConfigError):
        make_mask(1, 2, (8, 8), 1.0)


def test_patchify_roundtrip_exact_and_layout():
    x = torch.rand(2, 3, 16, 24)
    p = patchify(x, 8)
    assert p.shape == (2, 6, 192)
    assert torch.equal(unpatchify(p, 8, (2, 3)), x)
    # (row, col, channel) with channel fastest: element 1 is channel 1 of pixel (0, 0).
    assert p[0, 0, 1] == x[0, 1, 0, 0] and p[0, 0, 3] == x[0, 0, 0, 1] and p[0, 1, 0] == x[0, 0, 0, 8]
    v = torch.rand(1, 3, 2, 8, 16)
    assert torch.equal(unpatchify(patchify(v, 4), 4, (2, 4), num_frames=2), v)
