"""Training checkpoints: Accelerate's ``save_state`` folders, written atomically and rotated.

Layout of a run folder::

    RUN/config.yaml                       the resolved config
    RUN/metrics.jsonl                     one JSON record per log/eval line
    RUN/checkpoints/step_00001000/        accelerator.save_state() + cwm_checkpoint.json
    RUN/checkpoints/.tmp-step_00002000/   a checkpoint being written (ignored, cleaned up)
    RUN/export/                           model.safetensors + config.json (cwm.load reads it)

A checkpoint is written into a ``.tmp-`` folder, its files are flushed to disk, and only then is
the folder renamed to ``step_N``. A crash or SIGKILL mid-write therefore leaves the previous
checkpoint as the newest complete one, and a full disk raises :class:`TrainingError` after
removing the partial folder.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cwm.errors import CWMError, ConfigError

CHECKPOINTS = "checkpoints"
META_FILE = "cwm_checkpoint.json"
#: Bumped if the checkpoint layout changes incompatibly.
CHECKPOINT_FORMAT = 1
_PREFIX, _TMP = "step_", ".tmp-"


class TrainingError(CWMError, RuntimeError):
    """Training cannot continue: a non-finite loss, a failed checkpoint write, a bad resume path."""


def checkpoint_name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.name.startswith(_PREFIX) and (p / META_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(_PREFIX):]))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder, or a run folder (its newest checkpoint)."""
    p = Path(path)
    if (p / META_FILE).is_file():
        return p
    latest = latest_checkpoint(p)
    if latest is None:
        raise TrainingError(f"'{path}' is neither a checkpoint folder (no {META_FILE}) nor a run folder "
                            f"with complete checkpoints under {CHECKPOINTS}/")
    return latest


def read_meta(ckpt: str | os.PathLike) -> dict[str, Any]:
    path = Path(ckpt) / META_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TrainingError(f"cannot read '{path}': {e}") from None
    if meta.get("format", 0) > CHECKPOINT_FORMAT:
        raise ConfigError(f"'{path}' has checkpoint format {meta.get('format')}; this cwm reads up to "
                          f"{CHECKPOINT_FORMAT} (upgrade cwm)")
    return meta


def _fsync_tree(folder: Path) -> None:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_partial(run_dir: str | os.PathLike) -> None:
    """Remove ``.tmp-`` folders left by an interrupted write (main process only)."""
    root = Path(run_dir) / CHECKPOINTS
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(_TMP):
                shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(accelerator, run_dir: str | os.PathLike, step: int, meta: dict[str, Any],
                    keep: int) -> Path:
    """``accelerator.save_state`` into a temporary folder, then rename it to ``step_N`` and rotate.

    Call on every process (``save_state`` writes per-process RNG files). ``keep`` newest
    checkpoints are kept (0: all).
    """
    root = Path(run_dir) / CHECKPOINTS
    final, tmp = root / checkpoint_name(step), root / (_TMP + checkpoint_name(step))
    main = accelerator.is_main_process
    if main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        if main:
            record = {"format": CHECKPOINT_FORMAT, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      **meta}
            (tmp / META_FILE).write_text(json.dumps(record, indent=2) + "\n")
            _fsync_tree(tmp)
    except Exception as e:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise _save_error(e, final, latest_checkpoint(run_dir)) from e
    accelerator.wait_for_everyone()
    if main:
        if final.exists():  # re-saving a step (e.g. after a resume): swap, never leave a gap
            old = root / (_TMP + "old-" + final.name)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        if keep > 0:
            for old in list_checkpoints(run_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _save_error(e: BaseException, final: Path, previous: Path | None) -> TrainingError:
    kept = f"the previous checkpoint '{previous}' is intact" if previous else "no earlier checkpoint exists"
    err = getattr(e, "errno", None)
    if err == errno.ENOSPC or "No space left" in str(e):
        return TrainingError(f"no space left on the device while writing checkpoint '{final}'; "
                             f"the partial write was removed and {kept}. Free space, then resume.")
    return TrainingError(f"could not write checkpoint '{final}': {type(e).__name__}: {e}; {kept}")
