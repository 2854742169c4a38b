"""The manifest of a folder run: one record per video, the options it was made with, the summary.

Each video's outcome is a JSON record ``OUT/.cwm-manifest/<key>.json`` (written atomically; the
truth a re-run reads), with ``options``: the command and every option that shapes its outputs
(files named by an option, such as ``--points``, by their SHA-256). A re-run whose options differ
from those of a finished video refuses in one line (``--overwrite`` redoes the videos instead),
so one output folder never mixes videos made two ways. Records of a cwm that did not record
options are refused the same way, as made by an older cwm: nothing finished is lost.
``OUT/manifest.json`` gathers all records and the run's summary.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cwm.cli.discovery import Item
from cwm.errors import InputError

RECORDS = ".cwm-manifest"
MANIFEST = "manifest.json"
PARTIAL = ".cwm-partial-"
#: Arguments that do not change what a video's outputs hold: where they go, how the run reports,
#: where it computes, how many pairs share a probe call (a batch reads bit-identically to its
#: pairs one by one: tests/test_folders.py), and the run's own bookkeeping.
NOT_OPTIONS = frozenset({"command", "run", "rest", "inputs", "input", "out", "overwrite", "quiet", "device",
                         "batch", "predictor_cache", "pairs_done", "item_name"})


def file_digest(path: str | Path) -> str:
    """``"sha256:<hex>"`` of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def _plain(value):
    """``value`` as JSON stores it (tuples as lists, paths as text; an existing file as its digest)."""
    if isinstance(value, Path):
        return file_digest(value) if value.is_file() else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def options_of(args, command: str, extra: dict | None = None) -> dict:
    """The options a video of ``command`` is made with: every argument but :data:`NOT_OPTIONS`,
    JSON-ready, updated with ``extra`` (a command's per-video options)."""
    options = {"command": command}
    options.update({k: _plain(v) for k, v in sorted(vars(args).items()) if k not in NOT_OPTIONS and not callable(v)})
    options.update(extra or {})
    return json.loads(json.dumps(options))


def _worded(key: str, value) -> str:
    if key == "command":
        return f"`cwm {value}`"
    flag = "--" + key.replace("_", "-")
    return flag if value is True else f"no {flag}" if value in (None, False) else f"{flag} {value}"


def check_options(out: Path, records: dict[str, dict], items: list[Item], expected: Callable[[Item], dict]) -> None:
    """Refuse (one line) to add to ``out`` videos made with options other than its finished ones."""
    for item in items:
        record = records.get(item.key, {})
        if record.get("status") != "done":
            continue
        if "options" not in record:
            raise InputError(f"'{out / item.name}' was made by an older cwm that did not record its options; "
                             "pass --overwrite to redo the videos of this folder (or use another -o)")
        old, new = record["options"], expected(item)
        if old != new:
            key = next(k for k in sorted(set(old) | set(new), key=lambda k: (k != "command", k))
                       if k not in old or k not in new or old[k] != new[k])
            raise InputError(f"'{out / item.name}' was made with {_worded(key, old.get(key))}, this run asks for "
                             f"{_worded(key, new.get(key))}; pass --overwrite to redo the videos with the new "
                             "options (or use another -o)")


def read_records(out: Path) -> dict[str, dict]:
    """The per-video records of ``out`` by key (unreadable records are ignored: redone)."""
    records = {}
    folder = out / RECORDS
    if folder.is_dir():
        for p in folder.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                records[p.stem] = json.loads(p.read_text())
    return records


def write_record(out: Path, sub: str, key: str, record: dict) -> None:
    from cwm.atomic import atomic_write

    path = out / RECORDS / sub / f"{key}.json" if sub else out / RECORDS / f"{key}.json"
    with atomic_write(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def remove_dead_partials(out: Path) -> None:
    """Temporary folders of runs on this host whose process is gone (killed)."""
    from cwm.atomic import _running

    host = socket.gethostname()
    for p in out.glob(f"{PARTIAL}{glob.escape(host)}-*") if out.is_dir() else []:
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def summarise(out: Path, command: str, items: list[Item], skipped: int, start: float, world: int,
               quiet: bool) -> int:
    """Write ``OUT/manifest.json`` (every record and the run's summary) and print the summary;
    returns the exit status (2 when a video failed)."""
    from cwm.atomic import atomic_write

    records = read_records(out)
    ranks = rank_records(out, world)
    rows = [records.get(it.key, {"input": str(it.path), "output": it.name, "status": "missing"}) for it in items]
    done = sum(r.get("status") == "done" for r in rows) - skipped
    failed = [r for r in rows if r.get("status") != "done"]
    pairs = sum(r["pairs"] for r in ranks)
    seconds = time.perf_counter() - start
    summary = {"command": command, "videos": len(items), "done": done, "skipped": skipped,
               "failed": len(failed), "pairs": pairs, "seconds": round(seconds, 3),
               "pairs_per_s": round(pairs / seconds, 3) if seconds > 0 else 0.0, "processes": world}
    with atomic_write(out / MANIFEST, overwrite=True) as tmp:
        tmp.write_text(json.dumps({"summary": summary, "videos": rows}, indent=1) + "\n")
    shutil.rmtree(out / RECORDS / "_rank", ignore_errors=True)
    print(f"cwm: {command}: {done} done, {skipped} skipped, {len(failed)} failed of {len(items)} videos; "
          f"{pairs} pairs in {seconds:.1f} s ({summary['pairs_per_s']:.2f} pairs/s, {world} "
          f"process{'es' if world > 1 else ''}); manifest: {out / MANIFEST}", file=sys.stderr)
    for r in failed:
        print(f"cwm: {command}: failed: {r['output']}: {r.get('reason', r['status'])}", file=sys.stderr)
    if not quiet:
        print(out)
    return 2 if failed else 0


def rank_records(out: Path, world: int) -> list[dict]:
    """This run's per-process totals (a killed run with more processes may have left others)."""
    rows = []
    for k in range(world):
        with contextlib.suppress(OSError, ValueError):
            rows.append(json.loads((out / RECORDS / "_rank" / f"{k}.json").read_text()))
    return rows


