"""Weights: round trips are bit-exact; bad files fail with one clear message and run nothing."""
from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import cwm
from cwm.checkpoints import (load_model, load_pretrained, model_from_official, read_official, save_official,
                             save_pretrained)
from cwm.errors import ConfigError, WeightsError


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_our_format_roundtrip(tmp_path, tiny_model):
    save_pretrained(tiny_model, tmp_path / "w", training={"steps": 3})
    assert sorted(os.listdir(tmp_path / "w")) == ["config.json", "model.safetensors"]
    back = load_pretrained(tmp_path / "w")
    assert back.cfg == tiny_model.cfg and _same_weights(back, tiny_model)
    also = load_model(tmp_path / "w" / "model.safetensors")
    assert _same_weights(also, tiny_model)


@pytest.mark.parametrize("name", ["eccv2024_2frame_kbias1", "cwm2023_2frame"])
def test_official_import_export_import_bit_exact(tmp_path, fixtures_dir, name):
    sd = read_official(fixtures_dir / f"{name}.pth")
    model = model_from_official(sd, heads=(4, 2))
    save_official(model, tmp_path / "out.pth")
    sd2 = torch.load(tmp_path / "out.pth", weights_only=True)["model"]
    assert sd2.keys() == sd.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)
    again = model_from_official(sd2, heads=(4, 2))
    assert _same_weights(model, again)
    # ...and through our format too.
    save_pretrained(again, tmp_path / "ours")
    assert _same_weights(load_pretrained(tmp_path / "ours"), model)


def test_export_drops_k_bias_without_changing_outputs(tmp_path, tiny_model):
    """Models without k_bias train a full qkv bias; a key bias cannot change softmax, so dropping it is exact."""
    with torch.no_grad():
        for blk in tiny_model.encoder.blocks:
            blk.attn.qkv.bias.normal_()
    save_official(tiny_model, tmp_path / "x.pth")
    back = model_from_official(torch.load(tmp_path / "x.pth", weights_only=True)["model"], heads=(2, 2),
                               img_size=(32, 48))
    x, mask = torch.randn(1, 3, 2, 32, 48), torch.zeros(1, 48, dtype=torch.bool)
    mask[:, 24:44] = True
    with torch.no_grad():
        assert torch.allclose(back(x, mask), tiny_model(x, mask), atol=1e-5)


def test_nonexistent_path_and_unknown_name(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        cwm.load(str(tmp_path / "nope.pth"))
    with pytest.raises(WeightsError, match="did you mean 'eccv2024-2frame'"):
        cwm.load("eccv2024-2fram")


def test_truncated_safetensors(tmp_path, tiny_model):
    save_pretrained(tiny_model, tmp_path)
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(WeightsError, match="model.safetensors"):
        cwm.load(str(tmp_path))


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_object_is_not_executed(tmp_path):
    sentinel = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as fh:
        pickle.dump({"model": _Evil(str(sentinel))}, fh)
    with pytest.raises(WeightsError, match="evil.pth"):
        cwm.load(str(bad))
    assert not sentinel.exists()
    notsd = tmp_path / "list.pth"
    torch.save([1, 2, 3], notsd)
    with pytest.raises(WeightsError, match="does not hold a state dict"):
        cwm.load(str(notsd))


def test_missing_key_is_named(tmp_path, fixtures_dir):
    sd = torch.load(fixtures_dir / "eccv2024_2frame_kbias1.pth", weights_only=True)
    del sd["model"]["decoder.norm.weight"]
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(WeightsError, match="decoder.norm.weight"):
        cwm.load(str(tmp_path / "m.pth"), heads=(4, 2))


def test_unknown_heads_need_to_be_given(fixtures_dir):
    with pytest.raises(WeightsError, match="heads="):
        cwm.load(str(fixtures_dir / "cwm2023_2frame.pth"))


def test_wrong_shapes_and_bad_configs(tmp_path, tiny_model):
    save_pretrained(tiny_model, tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["architecture"]["enc_dim"] = 64
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="shape"):
        cwm.load(str(tmp_path))
    meta["architecture"]["enc_dim"] = 32
    meta["format_version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="format_version 99"):
        cwm.load(str(tmp_path))
    meta["format_version"] = 1
    meta["architecture"]["enc_dims"] = 32
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="did you mean enc_dim"):
        cwm.load(str(tmp_path))


def test_config_is_checked_against_the_file_before_allocating(tmp_path, tiny_model):
    # A config.json whose model would need hundreds of GiB (the position table alone is 256 GiB
    # in float64) must fail on the file's shapes, not with a MemoryError or after allocating.
    save_pretrained(tiny_model, tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["architecture"].update(enc_dim=65536, enc_heads=64, enc_depth=64, img_size=[4096, 4096])
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="missing keys 'encoder.blocks"):
        cwm.load(str(tmp_path))


def test_import_is_cheap_and_silent():
    import subprocess
    import sys

    code = "import sys, cwm; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "ok\n" and out.stderr == ""
