"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader never sees a half-written file, and an interrupted write (an exception, Ctrl-C) leaves
neither a partial target nor a stray temporary file behind.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

from cwm.errors import InputError


def _tmp_name(final: Path) -> Path:
    # Keep the real suffix last: writers such as cv2.imwrite and av.open pick the format from it.
    return final.with_name(f".{final.stem}.tmp-{uuid.uuid4().hex[:8]}{final.suffix}")


def _exists(final: Path) -> InputError:
    return InputError(f"cannot write '{final}': file exists; pass --overwrite to replace it")


def _commit(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move ``tmp`` onto ``final``; without ``overwrite``, never clobber a file that appeared."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)  # atomic create-if-absent
    except FileExistsError:
        raise _exists(final) from None
    except OSError:  # hard links unsupported here (FAT, some network shares): check, then rename
        if final.exists():
            raise _exists(final) from None
        os.replace(tmp, final)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The caller writes the file at the yielded path (it does not exist yet and has the same
    suffix as ``path``). If the ``with`` body raises anything, KeyboardInterrupt included, the
    temporary file is deleted and the target is left untouched. Missing parent folders are
    created.

    Args:
        path: the final file path.
        overwrite: replace an existing file at ``path``; otherwise that raises ``InputError``.
    Raises:
        InputError: ``path`` exists (without ``overwrite``), is a folder, or its folder cannot be
            created or written.
    """
    final = Path(path)
    if final.is_dir():
        raise InputError(f"cannot write '{final}': it is a folder")
    if final.exists() and not overwrite:
        raise _exists(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot write '{final}': cannot create folder "
                         f"'{final.parent}' ({e.strerror})") from None
    if not os.access(final.parent, os.W_OK):
        raise InputError(f"cannot write '{final}': folder '{final.parent}' is not writable")
    tmp = _tmp_name(final)
    try:
        yield tmp
        if not tmp.exists():
            raise InputError(f"cannot write '{final}': the writer produced no file")
        _commit(tmp, final, overwrite)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
