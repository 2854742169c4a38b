"""The table of named weights: the embedded default and the official releases.

Nothing here touches the network unless :func:`download` is called explicitly (the CLI's
``cwm weights download NAME``). Downloads go through torch's own downloader
(``torch.hub.download_url_to_file``: a progress bar, a ``.partial`` file renamed on success) into
a cache folder, ``$CWM_CACHE`` or ``~/.cache/cwm``, and are checked against the table's sha256
where it has one; a cached file is used as is. Hugging Face hub repositories are
:mod:`cwm.hf`'s business.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError

from cwm.atomic import atomic_write
from cwm.errors import WeightsError, did_you_mean

_SHA256 = re.compile(r"[0-9a-f]{64}")

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
        sha256: the downloaded file's sha256 (64 lowercase hex digits), checked after every
            download; None where it is not known (the publishers give none).
    """

    name: str
    description: str
    variant: str | None = None
    url: str | None = None
    embedded: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"weights '{self.name}': sha256 must be 64 lowercase hex digits")

    @property
    def entry_point(self) -> str:
        """The name as a Python identifier (``eccv2024-2frame`` -> ``eccv2024_2frame``), as
        ``hubconf.py`` exposes it to ``torch.hub.load``."""
        return re.sub(r"\W", "_", self.name)

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
        raise WeightsError(f"no registered weights named '{name}'{did_you_mean(name, WEIGHTS)} "
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


def download(name: str, force: bool = False, progress: bool = True) -> Path:
    """Download a registered official release into the cache (explicit; never called implicitly).

    Args:
        name: a registered name with a URL (``cwm weights list``).
        force: download again even if the file is cached.
        progress: show torch's progress bar (on stderr).
    Returns:
        the cached file. It appears only complete and, where the table has a sha256, checked:
        torch writes a ``.partial`` file and renames it on success, into a temporary name that
        :func:`cwm.atomic.atomic_write` fsyncs and renames onto the cached name.
    Raises:
        WeightsError: an unknown name, a failed download, or a sha256 mismatch (nothing is kept).
    """
    from torch.hub import download_url_to_file

    entry = get_entry(name)
    if entry.url is None:
        return local_path(name)
    dest = cache_dir() / entry.filename
    if dest.is_file() and not force:
        return dest
    try:
        with atomic_write(dest, overwrite=True) as tmp:
            download_url_to_file(entry.url, str(tmp), hash_prefix=entry.sha256, progress=progress)
    except RuntimeError as e:  # torch: 'invalid hash value (expected "...", got "...")'
        text = " ".join(str(e).split())
        if "invalid hash value" not in text:
            raise
        got = re.findall(r"[0-9a-f]{64}", text)
        detail = f"expected {entry.sha256}, got {got[-1]}" if got else text
        raise WeightsError(f"download of '{name}' from {entry.url} failed its sha256 check "
                           f"({detail}); nothing was kept") from None
    except OSError as e:  # URLError and HTTPError are OSErrors
        reason = e if isinstance(e, HTTPError) else (getattr(e, "reason", None) or e.strerror or e)
        raise WeightsError(f"download of '{name}' from {entry.url} failed: {reason}") from None
    return dest
