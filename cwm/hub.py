"""The table of named weights: the embedded default and the official releases.

Nothing here touches the network unless :func:`download` is called explicitly (the CLI's
``cwm weights download NAME``). Downloads go to a cache folder, ``$CWM_CACHE`` or
``~/.cache/cwm``; a cached file is used as is.
"""
from __future__ import annotations

import difflib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cwm.errors import WeightsError

EMBEDDED_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class WeightsEntry:
    """One named set of weights.

    Attributes:
        name: the registered name.
        description: one line for ``cwm weights list``.
        variant: the :data:`cwm.config.VARIANTS` entry giving heads, frame count and resolution
            (official files only; our folders carry their own config.json).
        url: where an official ``.pth`` is published (None for embedded weights).
        embedded: folder name under ``cwm/weights/`` for weights shipped in the package.
    """

    name: str
    description: str
    variant: str | None = None
    url: str | None = None
    embedded: str | None = None

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1] if self.url else self.name


_S3 = "https://counterfactual-world-modeling.s3.amazonaws.com/"
_GCS = "https://storage.googleapis.com/stanford_neuroai_models/cwm/"

WEIGHTS: dict[str, WeightsEntry] = {e.name: e for e in [
    WeightsEntry("default", "small CWM trained by cwm on synthetic scenes, shipped in the package",
                 embedded="default"),
    WeightsEntry("cwm2023-base-8x8", "official 2023 ViT-B, 8x8 patches, 2 frames, 224 px",
                 "cwm2023_base_8x8", _S3 + "cwm_baseVMAE_224px_8x8patches_2frames.pth"),
    WeightsEntry("cwm2023-large-4x4", "official 2023 ViT-L, 4x4 patches, 2 frames, 224 px",
                 "cwm2023_large_4x4", _S3 + "cwm_largeVMAE_224px_4x4patches_2frames.pth"),
    WeightsEntry("eccv2024-2frame", "official ECCV 2024 ViT-B/8, 2 frames, 224 px",
                 "eccv2024_2frame_b8", _GCS + "2frame_cwm_8x8.pth"),
    WeightsEntry("eccv2024-3frame", "official ECCV 2024 ViT-B/8, 3 frames, 224 px",
                 "eccv2024_3frame_b8", _GCS + "3frame_cwm_8x8.pth"),
]}


def cache_dir() -> Path:
    """Where downloaded weights live: ``$CWM_CACHE`` or ``~/.cache/cwm``."""
    return Path(os.environ.get("CWM_CACHE") or Path.home() / ".cache" / "cwm")


def get_entry(name: str) -> WeightsEntry:
    if name not in WEIGHTS:
        close = difflib.get_close_matches(name, WEIGHTS, 1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise WeightsError(f"no file or registered weights named '{name}'{hint} "
                           f"(registered: {', '.join(WEIGHTS)})")
    return WEIGHTS[name]


def local_path(name: str) -> Path:
    """The local file or folder of a registered name, without downloading anything."""
    entry = get_entry(name)
    if entry.embedded:
        path = EMBEDDED_DIR / entry.embedded
        if not (path / "model.safetensors").is_file():
            raise WeightsError(f"the embedded '{name}' weights are missing from this install ({path})")
        return path
    path = cache_dir() / entry.filename
    if not path.is_file():
        raise WeightsError(f"weights '{name}' are not downloaded; run `cwm weights download {name}` "
                           f"(they go to {path})")
    return path


def is_cached(name: str) -> bool:
    try:
        local_path(name)
        return True
    except WeightsError:
        return False


def download(name: str, force: bool = False, timeout: float = 60.0) -> Path:
    """Download a registered official release into the cache (explicit; never called implicitly)."""
    entry = get_entry(name)
    if entry.url is None:
        return local_path(name)
    dest = cache_dir() / entry.filename
    if dest.is_file() and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=timeout) as resp:
            shutil.copyfileobj(resp, out, length=1 << 20)
        os.replace(tmp, dest)
    except OSError as e:
        raise WeightsError(f"download of '{name}' from {entry.url} failed: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest
