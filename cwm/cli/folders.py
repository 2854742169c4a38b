"""Many videos in one command: a folder (searched recursively), a glob, or a folder of frames.

``cwm flow|occlusion|depth|segment DIR -o OUT`` processes every video under ``DIR`` (video files,
and folders of images such as DAVIS/Sintel sequences, each one video) into ``OUT/<path relative
to DIR, without its extension>/``. Launched as ``accelerate launch --num_processes N -m cwm ...``
(``--multi_gpu`` on GPUs and, through gloo, on CPUs), the processes split the videos, longest
first, by a greedy balance of frame counts that every process computes alike (rank and world
size from Accelerate's ``PartialState``); each video is processed by exactly one process, with
the same code and options as a one-process run.

Resume and faults: each video is written into a hidden temporary folder ``OUT/.cwm-partial-
<host>-<pid>/`` and renamed into place when complete, then recorded (atomically) as a JSON file
under ``OUT/.cwm-manifest/``; that record is the truth. A re-run skips the videos recorded done
(unless ``--overwrite``), retries the failed ones, and removes the temporary folders of dead
runs. A video that fails is recorded with its one-line reason and the others go on. At the end
the first process writes ``OUT/manifest.json`` (all records) and prints a summary.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import glob
import io
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cwm.cli.common import DEFAULT_OUT_ROOT, UsageError
from cwm.errors import CWMError, InputError

RECORDS = ".cwm-manifest"
MANIFEST = "manifest.json"
PARTIAL = ".cwm-partial-"


@dataclass
class Item:
    """One video of a collection: ``path`` (a file or a frames folder) and its output ``name``."""

    path: Path
    name: str  # output folder, relative to OUT (posix)
    frames: int = 0  # 0: unreadable (the failure is reported when it is processed)

    @property
    def key(self) -> str:
        return self.name.replace("/", "__")


# ------------------------------------------------------------------------------ frames folders
class FramesFolderReader:
    """A folder of images (natural sort order) read like a video: ``num_frames``, ``size``
    ``(H, W)``, ``fps`` (None), ``iter_frames()``, ``iter_indices()``; every image must have the
    first one's size."""

    def __init__(self, folder: str | os.PathLike, min_frames: int = 1):
        from cwm.framesource import list_frames_folder
        from cwm.io import read_image

        self.path, self._read = Path(folder), read_image
        self.files = list_frames_folder(folder)
        self.num_frames, self.fps = len(self.files), None
        if self.num_frames < min_frames:
            raise InputError(f"cannot use frames folder '{folder}': it has {self.num_frames} image(s), "
                             f"need at least {min_frames}")
        self.size = tuple(self._frame(0).shape[:2])

    def _frame(self, i: int) -> np.ndarray:
        frame = self._read(self.files[i])
        if i and frame.shape[:2] != self.size:
            raise InputError(f"frames folder '{self.path}': '{self.files[i].name}' is "
                             f"{frame.shape[1]}x{frame.shape[0]}, the first frame {self.size[1]}x{self.size[0]}")
        return frame

    def iter_frames(self):
        return (self._frame(i) for i in range(self.num_frames))

    def iter_indices(self, indices):
        return ((i, self._frame(i)) for i in indices)

    def close(self) -> None:
        pass


def _has_images(folder: Path) -> bool:
    from cwm.io import is_image_path

    return any(p.is_file() and is_image_path(p) for p in folder.iterdir())


# ------------------------------------------------------------------------------ what to process
def collection(inputs: list[str], out: Path | None) -> tuple[Path, list[Item]] | None:
    """``(root, items)`` when ``inputs`` is one folder of videos or one glob; None otherwise (one
    video, one frames folder or two images: the command's own path). Items are sorted by name."""
    from cwm.io import is_video_path

    if len(inputs) != 1:
        return None
    text = str(inputs[0])
    path = Path(text)
    if path.is_dir():
        if _has_images(path):
            return None  # a folder of frames: one video
        root = path
        found = [p for p in _walk(path, out)]
    elif not path.exists() and glob.has_magic(text):
        matches = sorted(Path(m) for m in glob.glob(text, recursive=True))
        found = [p for p in matches if (p.is_file() and is_video_path(p)) or (p.is_dir() and _has_images(p))]
        found = [p for p in found if out is None or not _inside(p, out)]
        if not found:
            raise InputError(f"no videos or frame folders match '{text}'")
        root = Path(os.path.commonpath([str(p.parent) for p in found]))
    else:
        return None
    if not found:
        raise InputError(f"no videos (.mp4, .avi, .mov, .mkv, .webm) or folders of frames under '{text}'")
    return root, _named(root, found)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _walk(root: Path, out: Path | None) -> list[Path]:
    """Video files and folders of images under ``root`` (not under ``out``), recursively; a
    folder of images is one video (its subfolders are not searched)."""
    from cwm.io import is_video_path

    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if out is not None and _inside(here, out):
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if here != root and _has_images(here):
            found.append(here)
            dirs[:] = []
        found += [here / f for f in sorted(files) if is_video_path(f)]
    return sorted(found)


def _named(root: Path, found: list[Path]) -> list[Item]:
    """Output names: the path relative to ``root`` without the extension (with it, ``.`` as
    ``_``, where two videos would otherwise share a name)."""
    rel = [p.relative_to(root) for p in found]
    plain = [(r.with_suffix("") if p.is_file() else r).as_posix() for p, r in zip(found, rel)]
    clash = {n for n in plain if plain.count(n) > 1}
    return [Item(p, (r.as_posix().replace(".", "_") if n in clash else n))
            for p, r, n in zip(found, rel, plain)]


def count_frames(item: Item) -> int:
    """Frames of ``item`` (its balance weight); 0 when it cannot be opened."""
    try:
        if item.path.is_dir():
            from cwm.framesource import list_frames_folder

            return len(list_frames_folder(item.path))
        from cwm.io import open_video

        with contextlib.closing(open_video(item.path)) as reader:
            return int(reader.num_frames)
    except Exception:  # noqa: BLE001  (reported when the video is processed)
        return 0


def balance(items: list[Item], world: int) -> list[list[Item]]:
    """Greedy longest-first split: each item, most frames first (then by name), goes to the
    process with the fewest frames so far (the lowest rank on ties)."""
    shares: list[list[Item]] = [[] for _ in range(world)]
    load = [0] * world
    for item in sorted(items, key=lambda it: (-it.frames, it.name)):
        r = min(range(world), key=lambda k: (load[k], k))
        shares[r].append(item)
        load[r] += max(item.frames, 1)
    return shares


# ------------------------------------------------------------------------------ processes
class _Single:
    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self) -> None:
        pass


def process_state():
    """Accelerate's ``PartialState`` when launched as one of several processes (gloo on a host
    without a GPU, as ``pretrain.train`` does); else a single-process stand-in."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        from pretrain.launch import single_process_warning

        warning = single_process_warning()
        if warning:
            print(f"cwm: {warning}", file=sys.stderr)
        return _Single()
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


# ------------------------------------------------------------------------------ the run
def run_folder(args: argparse.Namespace, command: str, run_one: Callable[[argparse.Namespace], int],
               found: tuple[Path, list[Item]]) -> int:
    """Process a collection with ``run_one`` (the command's one-video run) per video."""
    root, items = found
    out = Path(args.out) if args.out else DEFAULT_OUT_ROOT / f"{root.resolve().name}_{command}"
    if out.exists() and not out.is_dir():
        raise InputError(f"cannot write into '{out}': it is a file, not a folder")
    state = process_state()
    start = time.perf_counter()
    records = read_records(out)
    todo = [it for it in items if args.overwrite or records.get(it.key, {}).get("status") != "done"
            or not (out / it.name).is_dir()]
    skipped = len(items) - len(todo)
    _remove_dead_partials(out)
    for it in todo:
        it.frames = count_frames(it)
    mine = balance(todo, state.num_processes)[state.process_index]
    state.wait_for_everyone()  # every process has read the records before any is written
    if args.device is None and state.num_processes > 1 and getattr(state, "device", None) is not None \
            and state.device.type == "cuda":
        args.device = str(state.device)
    args.predictor_cache = {}  # one model for all the videos of this process
    partial = out / f"{PARTIAL}{socket.gethostname()}-{os.getpid()}"
    pairs = 0
    who = f"process {state.process_index}: " if state.num_processes > 1 else ""
    try:
        for i, it in enumerate(mine, 1):
            record = _process(args, command, run_one, it, out, partial)
            pairs += record["pairs"]
            if not args.quiet:
                outcome = (f"{record['pairs']} pairs in {record['seconds']:.1f} s" if record["status"] == "done"
                           else f"failed: {record['reason']}")
                print(f"cwm: {command}: {who}[{i}/{len(mine)}] {it.name}: {outcome}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    seconds = time.perf_counter() - start
    _write_record(out, "_rank", f"{state.process_index}", {"pairs": pairs, "seconds": seconds})
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    return _summarise(out, command, items, skipped, start, state.num_processes, args.quiet)


def _process(args, command: str, run_one, item: Item, out: Path, partial: Path) -> dict:
    """Run one video into ``partial/<name>``, rename it to ``out/<name>``, record the outcome;
    returns the record (``pairs`` is 0 when it failed)."""
    final, tmp = out / item.name, partial / item.name
    t0 = time.perf_counter()
    record = {"input": str(item.path), "output": item.name, "frames": item.frames, "host": socket.gethostname(),
              "pid": os.getpid()}
    try:
        if final.exists() and not args.overwrite:
            raise InputError(f"output folder '{final}' exists and is not recorded as done here; "
                             "pass --overwrite to replace it")
        sub = copy.copy(args)
        sub.out, sub.overwrite, sub.quiet, sub.pairs_done = tmp, False, True, 1
        _set_input(sub, item)
        with contextlib.redirect_stdout(io.StringIO()):  # each video's list of paths: not printed
            run_one(sub)
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        # The record first, then the rename: killed in between, the record says done but the
        # folder is missing, which a re-run redoes (never a finished folder without a record).
        record.update(status="done", pairs=int(sub.pairs_done), seconds=round(time.perf_counter() - t0, 3),
                      finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        _write_record(out, "", item.key, record)
        os.replace(tmp, final)
        from cwm.atomic import fsync_dir

        fsync_dir(final.parent)
        return record
    except (CWMError, UsageError, Exception) as e:  # noqa: BLE001  one video's failure is recorded
        from cwm.cli.main import _cli_message

        shutil.rmtree(tmp, ignore_errors=True)
        record.update(status="failed", pairs=0, reason=_cli_message(e) if isinstance(e, (CWMError, UsageError))
                      else f"{type(e).__name__}: {' '.join(str(e).split())}")
    record.update(seconds=round(time.perf_counter() - t0, 3),
                  finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _write_record(out, "", item.key, record)
    return record


def _set_input(args: argparse.Namespace, item: Item) -> None:
    """Point the one-video command at ``item``; a frames folder becomes two images (depth) or one
    image (segment) where the command reads images, not a stream."""
    if hasattr(args, "input"):  # segment: one image or a video frame
        if item.path.is_dir():
            from cwm.framesource import list_frames_folder

            files = list_frames_folder(item.path)
            args.input, args.frame = str(files[min(args.frame or 0, len(files) - 1)]), None
        else:
            args.input = str(item.path)
        return
    if item.path.is_dir() and not hasattr(args, "every"):  # depth: frames 0 and gap
        from cwm.framesource import list_frames_folder

        files, gap = list_frames_folder(item.path), args.gap or 1
        if len(files) <= gap:
            raise InputError(f"frames folder '{item.path}' has {len(files)} image(s), need at least {gap + 1}")
        args.inputs, args.gap = [str(files[0]), str(files[gap])], None
        return
    args.inputs = [str(item.path)]


def read_records(out: Path) -> dict[str, dict]:
    """The per-video records of ``out`` by key (unreadable records are ignored: redone)."""
    records = {}
    folder = out / RECORDS
    if folder.is_dir():
        for p in folder.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                records[p.stem] = json.loads(p.read_text())
    return records


def _write_record(out: Path, sub: str, key: str, record: dict) -> None:
    from cwm.atomic import atomic_write

    path = out / RECORDS / sub / f"{key}.json" if sub else out / RECORDS / f"{key}.json"
    with atomic_write(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")


def _remove_dead_partials(out: Path) -> None:
    """Temporary folders of runs on this host whose process is gone (killed)."""
    from cwm.atomic import _running

    host = socket.gethostname()
    for p in out.glob(f"{PARTIAL}{glob.escape(host)}-*") if out.is_dir() else []:
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def _summarise(out: Path, command: str, items: list[Item], skipped: int, start: float, world: int,
               quiet: bool) -> int:
    from cwm.atomic import atomic_write

    records = read_records(out)
    ranks = _rank_records(out, world)
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


def _rank_records(out: Path, world: int) -> list[dict]:
    """This run's per-process totals (a killed run with more processes may have left others)."""
    rows = []
    for k in range(world):
        with contextlib.suppress(OSError, ValueError):
            rows.append(json.loads((out / RECORDS / "_rank" / f"{k}.json").read_text()))
    return rows


def dispatch(args: argparse.Namespace, command: str, run_one: Callable[[argparse.Namespace], int]) -> int | None:
    """Run ``command`` over a collection when its input is one; None to run it on one input."""
    inputs = [args.input] if hasattr(args, "input") else list(args.inputs)
    found = collection(inputs, Path(args.out) if args.out else None)
    if found is None:
        if len(inputs) == 1 and Path(inputs[0]).is_dir() and not hasattr(args, "every"):
            if args.out is None:  # named after the folder, not its first image
                args.out = DEFAULT_OUT_ROOT / f"{Path(inputs[0]).resolve().name}_{command}"
            _set_input(args, Item(Path(inputs[0]), ""))  # depth/segment of one frames folder
        return None
    return run_folder(args, command, run_one, found)
