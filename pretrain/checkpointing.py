"""Training checkpoints: Accelerate's ``save_state`` folders, written atomically and rotated.

Layout of a run folder::

    RUN/config.yaml                       the resolved config
    RUN/metrics.jsonl                     one JSON record per log/eval line
    RUN/checkpoints/step_00001000/        accelerator.save_state() + cwm_checkpoint.json
    RUN/checkpoints/.tmp-step_00002000/   a checkpoint being written (ignored, cleaned up)
    RUN/export/                           model.safetensors + config.json (cwm.load reads it)

A checkpoint is written into a ``.tmp-`` folder, its files are flushed to disk, and only then is
the folder renamed to ``step_N``. A crash or SIGKILL mid-write therefore leaves the previous
checkpoint as the newest complete one (the partial folder is removed when the run resumes), and a
full disk raises :class:`TrainingError` after removing the partial folder.

With several processes, every process writes part of a checkpoint (its RNG state; the main one
also the model and optimizer). The processes agree on the outcome before the rename: a write that
fails on any of them raises :class:`TrainingError` on all of them, so none is left waiting in a
barrier for a process that has given up.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cwm.atomic import fsync_dir, fsync_file
from cwm.errors import CWMError, ConfigError

CHECKPOINTS = "checkpoints"
META_FILE = "cwm_checkpoint.json"
#: Bumped if the checkpoint layout changes incompatibly.
CHECKPOINT_FORMAT = 1
_PREFIX, _TMP = "step_", ".tmp-"
_OLD = _TMP + "old-"


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
            fsync_file(p)
    fsync_dir(folder)


def clean_partial(run_dir: str | os.PathLike) -> None:
    """Remove ``.tmp-`` folders left by an interrupted write (main process only).

    A checkpoint moved aside to be replaced (``.tmp-old-step_N``, see :func:`save_checkpoint`)
    whose replacement never arrived is moved back first, so an interrupted swap loses nothing.
    """
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return
    for p in root.iterdir():
        if p.name.startswith(_OLD) and (p / META_FILE).is_file() and not (root / p.name[len(_OLD):]).exists():
            os.replace(p, root / p.name[len(_OLD):])
    for p in root.iterdir():
        if p.name.startswith(_TMP):
            shutil.rmtree(p, ignore_errors=True)


def _any_process(accelerator, flag: bool) -> bool:
    """True if ``flag`` is true on any process (a collective call: every process must make it)."""
    if accelerator.num_processes == 1:
        return flag
    import torch

    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def save_checkpoint(accelerator, run_dir: str | os.PathLike, step: int, meta: dict[str, Any],
                    keep: int) -> Path:
    """``accelerator.save_state`` into a temporary folder, then rename it to ``step_N`` and rotate.

    Call on every process (``save_state`` writes per-process RNG files). ``keep`` newest
    checkpoints are kept (0: all).

    Raises:
        TrainingError: on every process, if the write failed on any process (a full disk, a
            permission error, ...); the partial folder is removed and earlier checkpoints are
            left as they were.
    """
    root = Path(run_dir) / CHECKPOINTS
    final, tmp = root / checkpoint_name(step), root / (_TMP + checkpoint_name(step))
    main = accelerator.is_main_process
    if main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    error: BaseException | None = None
    try:
        accelerator.save_state(str(tmp))
        if main:
            record = {"format": CHECKPOINT_FORMAT, "step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                      **meta}
            (tmp / META_FILE).write_text(json.dumps(record, indent=2) + "\n")
            _fsync_tree(tmp)
    except Exception as e:
        error = e
    # Collective: a process whose write failed must not leave the others waiting in a barrier.
    if _any_process(accelerator, error is not None):
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        if error is None:
            raise TrainingError(f"could not write checkpoint '{final}': another process failed to write "
                                f"its part; {_kept(previous)}")
        raise _save_error(error, final, previous) from error
    if main:
        if final.exists():  # re-saving a step: swap (clean_partial undoes a half-done swap)
            old = root / (_OLD + final.name)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        fsync_dir(root)
        if keep > 0:
            for old in list_checkpoints(run_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _kept(previous: Path | None) -> str:
    return f"the previous checkpoint '{previous}' is intact" if previous else "no earlier checkpoint exists"


def _save_error(e: BaseException, final: Path, previous: Path | None) -> TrainingError:
    """One line: the checkpoint, the reason, and what is left."""
    kept = _kept(previous)
    if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
        return TrainingError(f"could not write checkpoint '{final}': No space left on device; the partial "
                             f"write was removed and {kept}. Free space, then resume (--resume).")
    reason = " ".join(str(e).split()) or type(e).__name__
    return TrainingError(f"could not write checkpoint '{final}': {type(e).__name__}: {reason}; {kept}")
