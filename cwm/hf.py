"""Weights on the Hugging Face hub: repositories in our layout, and their model cards.

A cwm weights repository holds ``model.safetensors`` and ``config.json`` (the folder that
:func:`cwm.checkpoints.save_pretrained` writes), plus a ``README.md`` model card.
``cwm.load("org/name")`` fetches it with ``huggingface_hub`` (an optional dependency:
``pip install "cwm[hub]"``) into the hub's own cache, so the standard variables apply:
``HF_HUB_CACHE``/``HF_HOME`` say where the cache is, ``HF_HUB_OFFLINE=1`` reads only the cache,
and ``HF_TOKEN`` (or logging in with the hub's CLI) opens private repositories. Push a folder with the hub's
own tools (``hf upload org/name FOLDER``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cwm.errors import WeightsError

WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.json", "README.md"
# The hub's repository-id rule, with the namespace required: `org/name`, each part of letters,
# digits, '-', '_' and '.', not starting or ending with '-' or '.', at most 96 characters.
_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"{_PART}/{_PART}")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` is a valid hub repository id of the form ``org/name``."""
    return bool(_HUB_ID.fullmatch(name)) and ".." not in name and "--" not in name and \
        not name.endswith(".git")


def snapshot(repo_id: str, revision: str | None = None) -> Path:
    """The local folder holding ``repo_id``'s ``config.json`` and ``model.safetensors``.

    Both files come from one commit of the repository: from the hub's cache when they are there
    (only from it under ``HF_HUB_OFFLINE=1``), downloaded into it otherwise.

    Args:
        repo_id: ``org/name`` (see :func:`is_hub_id`).
        revision: a branch, tag or commit hash; None for the default branch.
    Raises:
        WeightsError: huggingface_hub is not installed, the repository or one of the files does
            not exist (or is private), or it is not cached and the hub cannot be reached.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsError(f"loading '{repo_id}' from the Hugging Face hub needs huggingface_hub; "
                           "install it with: pip install \"cwm[hub]\"") from None
    from cwm import __version__

    config = _fetch(hf_hub_download, repo_id, CONFIG_FILE, revision, __version__)
    commit = config.parent.name  # snapshots/<commit>/config.json: pin the weights to that commit
    weights = _fetch(hf_hub_download, repo_id, WEIGHTS_FILE, commit, __version__)
    if weights.parent != config.parent:  # a cache laid out otherwise: keep them together by name
        raise WeightsError(f"'{repo_id}': config.json and model.safetensors resolved to different "
                           f"snapshots ({config.parent}, {weights.parent})")
    return config.parent


def _fetch(download, repo_id: str, filename: str, revision: str | None, version: str) -> Path:
    try:
        return Path(download(repo_id, filename, revision=revision, library_name="cwm",
                             library_version=version))
    except Exception as e:  # huggingface_hub's errors changed names across versions: classify by name
        raise WeightsError(_hub_error(repo_id, filename, revision, e)) from None


def _hub_error(repo_id: str, filename: str, revision: str | None, e: BaseException) -> str:
    kinds = {c.__name__ for c in type(e).__mro__}
    rev = f" at revision '{revision}'" if revision else ""
    if "GatedRepoError" in kinds:
        return f"Hugging Face hub repository '{repo_id}' is gated: accept its terms on the hub, then log in or set HF_TOKEN"
    if "RepositoryNotFoundError" in kinds:
        return (f"'{repo_id}' is not a local folder, and the Hugging Face hub has no repository '{repo_id}' "
                "(or it is private: log in or set HF_TOKEN)")
    if "RevisionNotFoundError" in kinds:
        return f"Hugging Face hub repository '{repo_id}' has no revision '{revision}'"
    if "LocalEntryNotFoundError" in kinds or "OfflineModeIsEnabled" in kinds:
        from huggingface_hub import constants

        return (f"'{repo_id}'{rev} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and the hub "
                f"cannot be reached (offline, or HF_HUB_OFFLINE=1); it needs {filename}")
    if "EntryNotFoundError" in kinds:
        return (f"Hugging Face hub repository '{repo_id}'{rev} has no {filename}: not a cwm weights "
                f"repository (cwm needs {WEIGHTS_FILE} + {CONFIG_FILE})")
    text = " ".join(str(e).split())[:200] or type(e).__name__
    return f"cannot fetch {filename} of '{repo_id}' from the Hugging Face hub: {type(e).__name__}: {text}"


def model_card(cfg: Any, training: dict[str, Any] | None = None, name: str | None = None,
               repo_id: str | None = None) -> str:
    """A short ``README.md`` model card for a weights folder (hub metadata header included).

    Args:
        cfg: the model's :class:`cwm.config.CWMConfig`.
        training: the training metadata written to ``config.json`` (shown when given).
        name: how the card names the model (the folder's name).
        repo_id: the hub repository it will be pushed to, for the card's load example.
    """
    title = name or "CWM weights"
    size = "x".join(map(str, cfg.img_size)) if cfg.img_size else "any"
    lines = [
        "---", "library_name: cwm", "tags:", "- counterfactual-world-model", "- optical-flow",
        "- masked-autoencoder", "---", "",
        f"# {title}", "",
        "A Counterfactual World Model (a two-frame masked autoencoder) for the `cwm` toolkit: "
        "flow, occlusion, segments and depth are read out zero-shot as counterfactuals.", "",
        "```python", "import cwm", "",
        f'predictor = cwm.load("{repo_id}")' if repo_id else
        'predictor = cwm.load("path/to/this/folder")   # or "org/name" once pushed to the hub',

        "result = predictor.flow(frame0, frame1)   # numpy uint8 [H, W, 3] RGB in, .flow [H, W, 2] out",
        "```", "",
        "| | |", "|---|---|",
        f"| resolution | {size} |",
        f"| patch size | {cfg.patch_size} |",
        f"| frames | {cfg.num_frames} |",
        f"| encoder (width x depth, heads) | {cfg.enc_dim} x {cfg.enc_depth}, {cfg.enc_heads} |",
        f"| decoder (width x depth, heads) | {cfg.dec_dim} x {cfg.dec_depth}, {cfg.dec_heads} |",
    ]
    for key in ("step", "data", "batch_size", "trainer"):
        if training and key in training:
            lines.append(f"| training {key.replace('_', ' ')} | {training[key]} |")
    lines += ["", f"Files: `{WEIGHTS_FILE}` (safetensors) and `{CONFIG_FILE}` (architecture, "
                  "preprocessing, training metadata, format version).", ""]
    return "\n".join(lines)
