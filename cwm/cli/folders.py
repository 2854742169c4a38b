"""Many videos in one command: a folder (searched recursively), a glob, or a folder of frames.

``cwm flow|occlusion|depth|segment|track DIR -o OUT`` processes every video under ``DIR`` (video
files, and folders of images such as DAVIS/Sintel sequences, each one video; see
:mod:`cwm.cli.discovery`) into ``OUT/<path relative to DIR, without its extension>/``. Launched as
``accelerate launch --num_processes N -m cwm ...`` (``--multi_gpu`` on GPUs and, through gloo, on
CPUs), the processes split the videos, longest first, by a greedy balance of frame counts that
every process computes alike (rank and world size from Accelerate's ``PartialState``); each video
is processed by exactly one process, with the same code and options as a one-process run.

Resume and faults: each video is written into a hidden temporary folder ``OUT/.cwm-partial-
<host>-<pid>/`` and renamed into place when complete, then recorded (atomically) in the manifest
(:mod:`cwm.cli.manifest`), with the options it was made with; that record is the truth. A re-run
skips the videos recorded done (unless ``--overwrite``), refuses when its options differ from
theirs, retries the failed ones, and removes the temporary folders of dead runs. A video that
fails is recorded with its one-line reason and the others go on. At the end the first process
writes ``OUT/manifest.json`` (all records) and prints a summary.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cwm.cli.common import DEFAULT_OUT_ROOT, UsageError
from cwm.cli.discovery import Item, balance, collection, count_frames
from cwm.cli.manifest import (PARTIAL, check_options, options_of, read_records, remove_dead_partials, summarise,
                              write_record)
from cwm.errors import CWMError, InputError

#: A command's per-video options beyond its arguments (e.g. the digest of a video's query file).
ExtraOptions = Callable[[argparse.Namespace, Item], dict]


class _Single:
    process_index, num_processes, is_main_process = 0, 1, True

    def wait_for_everyone(self) -> None:
        pass


def process_state() -> object:
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


def run_folder(args: argparse.Namespace, command: str, run_one: Callable[[argparse.Namespace], int],
               found: tuple[Path, list[Item]], extra: ExtraOptions | None = None) -> int:
    """Process a collection with ``run_one`` (the command's one-video run) per video; ``extra``
    adds a video's own options to those its record keeps."""
    root, items = found
    out = Path(args.out) if args.out else DEFAULT_OUT_ROOT / f"{root.resolve().name}_{command}"
    if out.exists() and not out.is_dir():
        raise InputError(f"cannot write into '{out}': it is a file, not a folder")
    state = process_state()
    start = time.perf_counter()
    records = read_records(out)

    def options(item: Item) -> dict:
        return options_of(args, command, extra(args, item) if extra else None)

    if not args.overwrite:
        check_options(out, records, items, options)
    todo = [it for it in items if args.overwrite or records.get(it.key, {}).get("status") != "done"
            or not (out / it.name).is_dir()]
    skipped = len(items) - len(todo)
    remove_dead_partials(out)
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
            record = _process(args, command, run_one, it, out, partial, options(it))
            pairs += record["pairs"]
            if not args.quiet:
                outcome = (f"{record['pairs']} pairs in {record['seconds']:.1f} s" if record["status"] == "done"
                           else f"failed: {record['reason']}")
                print(f"cwm: {command}: {who}[{i}/{len(mine)}] {it.name}: {outcome}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    seconds = time.perf_counter() - start
    write_record(out, "_rank", f"{state.process_index}", {"pairs": pairs, "seconds": seconds})
    state.wait_for_everyone()
    if not state.is_main_process:
        return 0
    return summarise(out, command, items, skipped, start, state.num_processes, args.quiet)


def _process(args, command: str, run_one, item: Item, out: Path, partial: Path, options: dict) -> dict:
    """Run one video into ``partial/<name>``, rename it to ``out/<name>``, record the outcome;
    returns the record (``pairs`` is 0 when it failed)."""
    final, tmp = out / item.name, partial / item.name
    t0 = time.perf_counter()
    record = {"input": str(item.path), "output": item.name, "frames": item.frames, "host": socket.gethostname(),
              "pid": os.getpid(), "options": options}
    try:
        if final.exists() and not args.overwrite:
            raise InputError(f"output folder '{final}' exists and is not recorded as done here; "
                             "pass --overwrite to replace it")
        sub = copy.copy(args)
        sub.out, sub.overwrite, sub.quiet, sub.pairs_done, sub.item_name = tmp, False, True, 1, item.name
        _set_input(sub, item, command)
        with contextlib.redirect_stdout(io.StringIO()):  # each video's list of paths: not printed
            run_one(sub)
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        # The record first, then the rename: killed in between, the record says done but the
        # folder is missing, which a re-run redoes (never a finished folder without a record).
        record.update(status="done", pairs=int(sub.pairs_done), seconds=round(time.perf_counter() - t0, 3),
                      finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_record(out, "", item.key, record)
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
    write_record(out, "", item.key, record)
    return record


def _set_input(args: argparse.Namespace, item: Item, command: str) -> None:
    """Point the one-video command at ``item``; a frames folder becomes two images (depth) or one
    image (segment) where the command reads images, not a stream."""
    if command != "segment" and hasattr(args, "input"):  # track: a video or a frames folder
        args.input = str(item.path)
        return
    if command == "segment":  # one image or a video frame
        if item.path.is_dir():
            from cwm.framesource import list_frames_folder

            files = list_frames_folder(item.path)
            args.input, args.frame = str(files[min(args.frame or 0, len(files) - 1)]), None
        else:
            args.input = str(item.path)
        return
    if item.path.is_dir() and command == "depth":  # frames 0 and gap
        from cwm.framesource import list_frames_folder

        files, gap = list_frames_folder(item.path), args.gap or 1
        if len(files) <= gap:
            raise InputError(f"frames folder '{item.path}' has {len(files)} image(s), need at least {gap + 1}")
        args.inputs, args.gap = [str(files[0]), str(files[gap])], None
        return
    args.inputs = [str(item.path)]


def dispatch(args: argparse.Namespace, command: str, run_one: Callable[[argparse.Namespace], int],
             extra: ExtraOptions | None = None) -> int | None:
    """Run ``command`` over a collection when its input is one; None to run it on one input.

    ``extra(args, item)``: the video's own options, recorded with the command's arguments."""
    inputs = [args.input] if hasattr(args, "input") else list(args.inputs)
    found = collection(inputs, Path(args.out) if args.out else None)
    if found is None:
        if len(inputs) == 1 and Path(inputs[0]).is_dir() and command in ("depth", "segment"):
            if args.out is None:  # named after the folder, not its first image
                args.out = DEFAULT_OUT_ROOT / f"{Path(inputs[0]).resolve().name}_{command}"
            _set_input(args, Item(Path(inputs[0]), ""), command)  # depth/segment of one frames folder
        return None
    return run_folder(args, command, run_one, found, extra)
