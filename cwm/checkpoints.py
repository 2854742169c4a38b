"""Weights: our safetensors format, and the official ``.pth`` layout both ways.

Our format is a folder with ``model.safetensors`` and ``config.json``::

    {"format_version": 1, "architecture": {...CWMConfig fields...}, "training": {...}}

Official files are ``{'model': state_dict}`` with separate ``attn.q_bias``/``attn.v_bias`` (and
optionally ``attn.k_bias``); we read them with ``torch.load(weights_only=True)`` only, so a
malicious pickle cannot run code.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from cwm.atomic import atomic_write
from cwm.config import FORMAT_VERSION, CWMConfig
from cwm.errors import ConfigError, WeightsError, closest, shown
from cwm.model import CWM, build_model

WEIGHTS_FILE, CONFIG_FILE = "model.safetensors", "config.json"
_QKV_BIAS = re.compile(r"^(.*\.attn)\.(q_bias|k_bias|v_bias)$")

# Head counts are not recoverable from shapes: the known releases (docs/design.md §3).
_ENC_HEADS = {768: 12, 1024: 16}
_DEC_HEADS = {(384, False): 6, (512, True): 16, (512, False): 8}
_RELEASES = {(768, 384, False), (1024, 512, False), (768, 512, True)}  # (enc_dim, dec_dim, k_bias)


# --------------------------------------------------------------------------- official layout
def _infer_config(sd: dict[str, torch.Tensor], heads: tuple[int, int] | None, img_size: Any) -> CWMConfig:
    """Architecture from keys and shapes alone (plus the head counts)."""
    try:
        proj = sd["encoder.patch_embed.proj.weight"]  # (D, 3, 1, p, p)
        enc_dim, p = proj.shape[0], proj.shape[-1]
        dec_dim = sd["mask_token"].shape[-1]
        head_w = sd["decoder.head.weight"]
        enc_depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.blocks."))
        dec_depth = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.blocks."))
        mlp = sd["encoder.blocks.0.mlp.fc1.weight"].shape[0] / enc_dim
    except (KeyError, ValueError, IndexError) as e:
        raise WeightsError(f"not a CWM checkpoint: cannot infer the architecture (missing {e})") from None
    if head_w.shape[0] != 3 * p * p:
        raise WeightsError(f"decoder head outputs {head_w.shape[0]} values per token; expected 3*{p}*{p} "
                           "(tubelet 1, RGB)")
    k_bias = "encoder.blocks.0.attn.k_bias" in sd
    if heads is None:
        enc_h, dec_h = _ENC_HEADS.get(enc_dim), _DEC_HEADS.get((dec_dim, k_bias))
        if enc_h is None or dec_h is None:
            raise WeightsError(f"cannot infer head counts for encoder dim {enc_dim} / decoder dim {dec_dim} "
                               "(not a known release); pass heads=(encoder_heads, decoder_heads)")
        heads = (enc_h, dec_h)
    base = dict(patch_size=p, enc_dim=enc_dim, enc_depth=enc_depth, enc_heads=heads[0],
                dec_dim=dec_dim, dec_depth=dec_depth, dec_heads=heads[1], mlp_ratio=mlp, k_bias=k_bias)
    # Neither the build resolution nor the frame count is in the weights (the positional tables are
    # not stored). Known releases were built at 224 px; otherwise the resolution stays unknown (None)
    # and the tables are regenerated natively for each input, as the official class built at that
    # size would. The frame count only sets the predictor's default clip length: forward takes any T.
    known = (enc_dim, dec_dim, k_bias) in _RELEASES
    base["img_size"] = img_size if img_size is not None else ((224, 224) if known else None)
    try:
        return CWMConfig(**base)
    except ConfigError as e:
        raise WeightsError(f"inconsistent checkpoint: {e}") from None


def official_to_ours(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official state dict to ours: q/k/v biases become one ``qkv.bias``."""
    out, biases = {}, {}
    for k, v in sd.items():
        m = _QKV_BIAS.match(k)
        if m:
            biases.setdefault(m.group(1), {})[m.group(2)] = v
        else:
            out[k] = v
    for prefix, b in biases.items():
        if "q_bias" not in b or "v_bias" not in b:
            raise WeightsError(f"{prefix} has {sorted(b)} but needs both q_bias and v_bias")
        k_bias = b.get("k_bias", torch.zeros_like(b["q_bias"]))
        out[f"{prefix}.qkv.bias"] = torch.cat([b["q_bias"], k_bias, b["v_bias"]])
    return out


def ours_to_official(sd: dict[str, torch.Tensor], k_bias: bool) -> dict[str, torch.Tensor]:
    """Inverse of :func:`official_to_ours`. Without ``k_bias`` the k part is dropped: a bias on the
    keys adds the same q.b_k to every logit of a query, so softmax (and the output) ignores it."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".attn.qkv.bias"):
            prefix = k[: -len(".qkv.bias")]
            q, kb, vb = v.chunk(3)
            out[f"{prefix}.q_bias"] = q.clone()
            if k_bias:
                out[f"{prefix}.k_bias"] = kb.clone()
            out[f"{prefix}.v_bias"] = vb.clone()
        else:
            out[k] = v
    return out


def _check_keys(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], source: str) -> None:
    """Raise a one-line :class:`WeightsError` unless ``found`` has exactly the expected key shapes."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_short(unexpected)}")
        raise WeightsError(f"{source}: {'; '.join(parts)}")
    for k, shape in found.items():
        if tuple(shape) != tuple(expected[k]):
            raise WeightsError(f"{source}: key '{k}' has shape {tuple(shape)}, the model expects "
                               f"{tuple(expected[k])}")


def _shapes(sd: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


def _load_strict(model: CWM, sd: dict[str, torch.Tensor], source: str) -> CWM:
    _check_keys(_shapes(model.state_dict()), _shapes(sd), source)
    model.load_state_dict(sd, strict=True)
    return model


def _short(keys: list[str], n: int = 5) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(repr(k) for k in keys[:n]) + more


def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an official ``.pth`` safely (``weights_only=True``) and return its state dict."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise WeightsError(f"cannot load '{path}': the file is empty (0 bytes)")
        with warnings.catch_warnings():  # torch warns about pickle protocols it may not support
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as e:  # UnpicklingError for unsafe globals, RuntimeError/EOFError for junk
        raise WeightsError(f"cannot load '{path}' as a weights-only checkpoint: {_load_reason(e)}") from None
    sd = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else ckpt
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsError(f"'{path}' does not hold a state dict (got {type(sd).__name__})")
    return {k: v for k, v in sd.items()}


def _load_reason(e: BaseException) -> str:
    """The useful part of a ``torch.load`` error: torch wraps the unpickler's reason in a long
    advertisement for ``weights_only=False``, which cwm never uses."""
    text = " ".join(str(e).split())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split(" Please use", 1)[0].split(" Check the", 1)[0]
        text = text.strip().rstrip(".")
        if "GLOBAL" in text:
            text += " (the file asks to run code on load; cwm never does)"
    return _first_line(text.strip() or type(e).__name__)


def model_from_official(sd: dict[str, torch.Tensor], heads: tuple[int, int] | None = None,
                        img_size: Any = None, num_frames: int | None = None, source: str = "checkpoint") -> CWM:
    """Build and strictly load a model from an official state dict."""
    cfg = _infer_config(sd, heads, img_size)
    if num_frames is not None:
        cfg = cfg.replace(num_frames=num_frames)
    return _load_strict(build_model(cfg), official_to_ours(sd), source)


def save_official(model: CWM, path: str | Path) -> None:
    """Write ``{'model': state_dict}`` in the official key layout (for the official tools)."""
    sd = ours_to_official({k: v.detach().cpu() for k, v in model.state_dict().items()}, model.cfg.k_bias)
    with atomic_write(path, overwrite=True) as tmp:
        torch.save({"model": sd}, tmp)


# --------------------------------------------------------------------------- our format
def save_pretrained(model: CWM, folder: str | Path, training: dict[str, Any] | None = None) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` (each atomically)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {"format_version": FORMAT_VERSION, "architecture": model.cfg.to_dict(), "training": training or {}}
    with atomic_write(folder / WEIGHTS_FILE, overwrite=True) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    with atomic_write(folder / CONFIG_FILE, overwrite=True) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def read_config(path: str | Path) -> tuple[CWMConfig, dict[str, Any]]:
    """Parse ``config.json``: returns the config and the training metadata.

    Raises:
        WeightsError: the file does not exist.
        ConfigError: anything else: unreadable, not JSON, a newer ``format_version``, unknown
            fields, bad values. Nothing else escapes, whatever the file holds.
    """
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WeightsError(f"'{path}' not found (a weights folder needs {CONFIG_FILE} beside {WEIGHTS_FILE})") from None
    except OSError as e:
        raise ConfigError(f"cannot read '{path}': {e.strerror or e}") from None
    # ValueError: bad JSON, bad UTF-8, or an integer too long to convert; RecursionError: nesting.
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"cannot parse '{path}': {_first_line(e)}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("architecture"), dict):
        raise ConfigError(f"'{path}' has no 'architecture' object")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise ConfigError(f"'{path}' has format_version {shown(version)}; this cwm reads versions "
                          f"1..{FORMAT_VERSION} (upgrade cwm to read newer files)")
    unknown = sorted(set(meta) - {"format_version", "architecture", "training", "preprocessing"})
    if unknown:
        raise ConfigError(f"'{path}' has unknown top-level field(s): {', '.join(map(shown, unknown))}")
    try:
        cfg = CWMConfig.from_dict(meta["architecture"])
    except ConfigError as e:
        raise ConfigError(f"'{path}': {e}") from None
    training = meta.get("training", {})
    if not isinstance(training, dict):
        raise ConfigError(f"'{path}': 'training' must be an object, got {type(training).__name__}")
    return cfg, training


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_pretrained(path: str | Path) -> CWM:
    """Load our format: a folder, or a ``.safetensors`` file with ``config.json`` beside it."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    weights = path if path.is_file() else folder / WEIGHTS_FILE
    cfg, _ = read_config(folder / CONFIG_FILE)
    if not weights.is_file():
        raise WeightsError(f"'{weights}' not found")
    try:
        with safe_open(str(weights), framework="pt") as f:  # the header only: no tensor is read
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        # Check the config against the file before allocating anything: a config.json with huge
        # dimensions must fail here, not after building a model of that size.
        with torch.device("meta"):
            expected = _shapes(build_model(cfg).state_dict())
        _check_keys(expected, found, str(weights))
        sd = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"cannot read '{weights}': {str(e)[:200]} (truncated or not a safetensors file?)") from None
    model = build_model(cfg)
    model.load_state_dict(sd, strict=True)  # keys and shapes were checked against the header
    return model


# --------------------------------------------------------------------------- one entry point
_OFFICIAL_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def load_model(name_or_path: str | Path, heads: tuple[int, int] | None = None) -> CWM:
    """Load a model from a path, a registered name or a Hugging Face hub repository.

    ``name_or_path`` is tried in this order: an existing folder or file (our folder, a
    ``.safetensors`` file, or an official ``.pth``), so a local folder named like ``org/name``
    wins; a registered name (:data:`cwm.hub.WEIGHTS`); a hub repository id ``org/name``
    (:func:`cwm.hf.snapshot`, our layout).

    Args:
        name_or_path: see above.
        heads: ``(encoder_heads, decoder_heads)`` for official files that are not a known release.
    Raises:
        WeightsError: one line; for a name that is none of these, with a "did you mean".
    """
    from cwm import hf, hub

    path = Path(name_or_path)
    if not path.exists():
        name = str(name_or_path)
        if name in hub.WEIGHTS:
            entry = hub.get_entry(name)
            path = hub.local_path(entry.name)
            if entry.variant:
                from cwm.config import get_variant

                v = get_variant(entry.variant)
                sd = read_official(path)
                return model_from_official(sd, heads or (v.enc_heads, v.dec_heads), v.img_size,
                                           v.num_frames, source=str(path))
        elif hf.is_hub_id(name) and path.suffix.lower() not in (".safetensors", *_OFFICIAL_SUFFIXES):
            return load_pretrained(hf.snapshot(name))
        elif path.suffix or os.sep in name or "/" in name:
            raise WeightsError(f"weights path '{name}' does not exist")
        else:
            raise _unknown(name)
    if path.is_dir() or path.suffix == ".safetensors":
        return load_pretrained(path)
    if path.suffix in _OFFICIAL_SUFFIXES:
        if not os.access(path, os.R_OK):
            raise WeightsError(f"cannot read '{path}': permission denied")
        return model_from_official(read_official(path), heads, source=str(path))
    raise WeightsError(f"'{path}' is neither a weights folder, a .safetensors file nor an official .pth file")


def _unknown(name: str) -> WeightsError:
    from cwm import hub

    close = closest(name, hub.WEIGHTS)
    hint = f"did you mean '{close}'? " if close else ""
    return WeightsError(f"'{name}' is not a file or folder, a registered name or a Hugging Face hub id "
                        f"(org/name); {hint}(registered: {', '.join(hub.WEIGHTS)})")
