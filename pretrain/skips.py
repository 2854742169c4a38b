"""Videos a run skipped, collected from every process: the scan's and those that fail mid-run.

A video can pass the scan (its header and first frame decode) and fail later, when a clip needs
a frame past a cut in the file ("the stream ends after 346 decodable frames"). That happens in
whichever process reads it, often a DataLoader worker, so each failure is appended as one JSON
line ``{"path", "reason"}`` to ``<run>/skipped_videos.jsonl`` (one ``write`` on a file opened for
appending: lines from several processes do not interleave). The end-of-run summary reads it back.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

#: The log of skipped videos in a run folder.
LOG_NAME = "skipped_videos.jsonl"


def record(log: str | os.PathLike | None, path: str, reason: str) -> None:
    """Append one skipped video to ``log`` (nothing if ``log`` is None; a failed write is ignored:
    the video was already reported by a warning)."""
    if log is None:
        return
    line = (json.dumps({"path": str(path), "reason": " ".join(str(reason).split())}) + "\n").encode()
    try:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass


def read(log: str | os.PathLike) -> list[tuple[str, str]]:
    """``(path, reason)`` of each video in ``log``, once each (its first reason), in log order;
    a missing log, or an unreadable line (a process killed mid-write), is skipped over."""
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return []
    seen: dict[str, str] = {}
    for line in lines:
        try:
            entry = json.loads(line)
            seen.setdefault(str(entry["path"]), str(entry["reason"]))
        except (ValueError, KeyError, TypeError):
            continue
    return list(seen.items())


def start(dataset, run: Path, scanned: list[tuple[str, str]], fresh: bool, main_process: bool) -> Path:
    """Point ``dataset`` (if it reads videos) at the run's log; the main process starts the log
    (a fresh run drops a stale one) with the videos the scan skipped. Returns the log's path.

    Call it on every process, then let them all wait for the main one before reading data.
    """
    log = run / LOG_NAME
    if main_process:
        if fresh:
            log.unlink(missing_ok=True)
        for path, reason in scanned:
            record(log, path, reason)
    if hasattr(dataset, "skip_log"):
        dataset.skip_log = str(log)
    return log


def summary(skipped: list[tuple[str, str]], log: Path) -> list[str]:
    """The end-of-run lines about skipped videos (none when none was skipped)."""
    if not skipped:
        return []
    return [f"skipped {len(skipped)} video(s) (listed in {log}):",
            *(f"  {path}: {reason}" for path, reason in skipped)]
