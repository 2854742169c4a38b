"""Atomic file writes: write to a temporary name beside the target, then rename.

A reader never sees a half-written file, and an interrupted write (an exception, Ctrl-C) leaves
neither a partial target nor a stray temporary file behind. A process killed outright (SIGKILL,
a power cut) leaves at most its temporary file, ``.<stem>.tmp-<pid>-<random><suffix>``, never a
partial target; :func:`stale_temp_files` finds such leftovers.

Durability: the temporary file is flushed to disk (``fsync``) before the rename, and the folder
after it, so after a power cut the target is either the old file or the complete new one, never
a renamed but empty file. :func:`fsync_file` and :func:`fsync_dir` are the helpers for that, used
by the training checkpoints too.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import uuid
from pathlib import Path
from typing import Iterator

from cwm.errors import InputError, OutputExistsError


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to disk (the writer may have closed it already)."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename, a new or removed file) to disk.

    A no-op on Windows, where folders cannot be opened for ``fsync``, and on file systems that do
    not support it for folders (``EINVAL``).
    """
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def _tmp_name(final: Path) -> Path:
    # Keep the real suffix last: writers such as cv2.imwrite and av.open pick the format from it.
    # The writer's pid lets a later run tell a dead run's leftover from a live one's file.
    return final.with_name(f".{final.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{final.suffix}")


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files that :func:`atomic_write` left for ``path`` in processes that have died.

    Only files named like this module's temporaries, whose pid is not a running process on this
    machine, are listed (never on Windows, where the check is not available).
    """
    final = Path(path)
    if os.name == "nt" or not final.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(final.stem)}\.tmp-(\d+)-[0-9a-f]{{8}}{re.escape(final.suffix)}")
    found = final.parent.glob(f".{glob.escape(final.stem)}.tmp-*{glob.escape(final.suffix)}")
    return sorted(p for p in found if (m := pattern.fullmatch(p.name)) and not _running(int(m.group(1))))


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else, or the pid is out of range
        return pid > 0
    return True


def _exists(final: Path) -> OutputExistsError:
    return OutputExistsError(f"cannot write '{final}': file exists; pass overwrite=True to replace it", final)


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
    created. The file is fsynced before the rename and its folder after it.

    Args:
        path: the final file path.
        overwrite: replace an existing file at ``path``; otherwise that raises ``OutputExistsError``.
    Raises:
        OutputExistsError: ``path`` exists (without ``overwrite``); an ``InputError``.
        InputError: ``path`` is a folder, or its folder cannot be
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
        fsync_file(tmp)  # the data is on disk before the name points at it
        _commit(tmp, final, overwrite)
        fsync_dir(final.parent)  # and the rename is on disk before we return
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
