"""Pretraining under faults (issue 8): SIGKILL in the middle of a checkpoint write, a full disk,
and a write that fails on one process of two.

The faults are injected at a known point by a small driver (``DRIVER``) that wraps ``torch.save``,
which ``accelerator.save_state`` uses for the optimizer, scheduler and RNG files: when it is asked
to write the chosen file into the chosen checkpoint folder, it writes half of the bytes (what a
write cut short leaves on disk), then either pauses (to be SIGKILLed) or raises ENOSPC. The same
micro model as tests/test_pretrain.py keeps every run to a few seconds.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pretrain.__main__ import main
from pretrain.checkpointing import CHECKPOINTS, META_FILE, clean_partial, latest_checkpoint, list_checkpoints, read_meta
from pretrain.export import load_checkpoint_weights

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pretrain import MICRO, free_port, metrics, subprocess_env  # noqa: E402

sys.path.pop(0)

#: 6 steps, a checkpoint every 2: the faults hit the write of step 4, after step 2 was saved.
ARGS = [*MICRO, "train.max_steps=6", "train.batch_size=8", "train.checkpoint_every=2", "train.keep_checkpoints=2",
        "train.log_every=2", "train.eval_every=0", "train.mask_ratio=[0.5,0.9]", "optim.lr=3e-3",
        "optim.warmup_steps=2"]
FAULT_STEP = "step_00000004"

DRIVER = r'''
import errno, io, os, sys, time
from pathlib import Path
import torch

FILE, FOLDER, MODE = os.environ["FAULT_FILE"], os.environ["FAULT_FOLDER"], os.environ["FAULT_MODE"]
RANK, MARKER = os.environ.get("FAULT_RANK"), Path(os.environ["FAULT_MARKER"])
real_save = torch.save


def faulty_save(obj, f, *args, **kwargs):
    path = Path(f) if isinstance(f, (str, os.PathLike)) else None
    if (path is not None and path.name == FILE and path.parent.name == FOLDER
            and (RANK is None or os.environ.get("RANK", "0") == RANK)):
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        with open(path, "wb") as out:  # half of the file, as a write cut short leaves it
            out.write(data[: len(data) // 2])
            out.flush()
            os.fsync(out.fileno())
        MARKER.write_text(str(len(data)))
        if MODE == "pause":
            time.sleep(300)  # the test SIGKILLs the process here
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return real_save(obj, f, *args, **kwargs)


torch.save = faulty_save
from pretrain.__main__ import main

sys.exit(main(sys.argv[1:]))
'''


def fault_env(tmp_path: Path, file: str, mode: str, rank: int | None = None) -> dict[str, str]:
    env = dict(subprocess_env(), FAULT_FILE=file, FAULT_FOLDER=".tmp-" + FAULT_STEP, FAULT_MODE=mode,
               FAULT_MARKER=str(tmp_path / "fault.marker"))
    if rank is not None:
        env["FAULT_RANK"] = str(rank)
    return env


def driver(tmp_path: Path) -> str:
    path = tmp_path / "fault_driver.py"
    path.write_text(DRIVER)
    return str(path)


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_weights(latest_checkpoint(run))


def assert_bitwise_equal(run: Path, reference: Path) -> None:
    a, b = final_weights(run), final_weights(reference)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(run)[-1] == metrics(reference)[-1]


def assert_previous_is_loadable(run: Path) -> None:
    """step_2 is the newest complete checkpoint, and its weights and metadata load."""
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == "step_00000002", ckpt
    assert read_meta(ckpt)["step"] == 2
    weights = load_checkpoint_weights(ckpt)
    assert weights and all(torch.isfinite(v).all() for v in weights.values())


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run that every interrupted-then-resumed run must reproduce bitwise."""
    run = tmp_path_factory.mktemp("faults") / "whole"
    assert main([*ARGS, "--output-dir", str(run)]) == 0
    assert [p.name for p in list_checkpoints(run)] == ["step_00000004", "step_00000006"]
    return run


# ------------------------------------------------------------------------------------ SIGKILL
def test_sigkill_during_checkpoint_write_keeps_previous_and_resumes_exactly(tmp_path, reference):
    run, marker = tmp_path / "killed", tmp_path / "fault.marker"
    proc = subprocess.Popen([sys.executable, driver(tmp_path), *ARGS, "--output-dir", str(run)],
                            env=fault_env(tmp_path, "optimizer.bin", "pause"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not marker.exists():  # half of optimizer.bin of step 4 is on disk, the rest never comes
            assert proc.poll() is None, proc.stderr.read()[-2000:]
            assert time.time() < deadline, "the driver never reached the checkpoint write"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL

    root = run / CHECKPOINTS
    partial = root / (".tmp-" + FAULT_STEP)
    assert sorted(p.name for p in root.iterdir()) == [partial.name, "step_00000002"]
    assert (partial / "model.safetensors").is_file() and not (partial / META_FILE).exists()
    assert (partial / "optimizer.bin").stat().st_size == int(marker.read_text()) // 2  # cut mid-file
    assert_previous_is_loadable(run)

    # Resume without periodic saves: only the start-up clean-up can remove the partial step 4
    # (checkpointing does not touch the RNG, so the weights must still match bitwise).
    assert main(["--output-dir", str(run), "--resume", "train.checkpoint_every=0"]) == 0
    resumed = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed if r.get("event") == "resume"] == [2]
    assert sorted(p.name for p in root.iterdir()) == ["step_00000002", "step_00000006"]  # partial folder gone
    assert_bitwise_equal(run, reference)


# ------------------------------------------------------------------------------------ full disk
def test_no_space_on_save_is_one_clear_line_and_keeps_previous(tmp_path, reference, monkeypatch, capsys):
    run = tmp_path / "full"
    real_save, marker = torch.save, tmp_path / "fault.marker"

    def full_disk(obj, f, *args, **kwargs):  # the driver's fault, in this process
        path = Path(f) if isinstance(f, (str, os.PathLike)) else None
        if path is not None and path.name == "optimizer.bin" and path.parent.name == ".tmp-" + FAULT_STEP:
            path.write_bytes(b"\0" * 1000)  # some bytes made it before the disk filled up
            marker.write_text("1")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    saved = {}
    from pretrain import checkpointing

    real_checkpoint = checkpointing.save_checkpoint

    def record(acc, run_dir, step, *args, **kwargs):
        final = real_checkpoint(acc, run_dir, step, *args, **kwargs)
        saved[final.name] = digests(final)
        return final

    monkeypatch.setattr(checkpointing, "save_checkpoint", record)
    assert main([*ARGS, "--output-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert marker.exists()
    final = run / CHECKPOINTS / FAULT_STEP
    assert err == (f"error: could not write checkpoint '{final}': No space left on device; the partial write was "
                   f"removed and the previous checkpoint '{run / CHECKPOINTS / 'step_00000002'}' is intact. "
                   "Free space, then resume (--resume).")
    # Nothing half-written under any name, and the previous checkpoint is byte for byte as saved.
    assert sorted(p.name for p in (run / CHECKPOINTS).iterdir()) == ["step_00000002"]
    assert digests(run / CHECKPOINTS / "step_00000002") == saved["step_00000002"]
    assert_previous_is_loadable(run)

    monkeypatch.setattr(torch, "save", real_save)  # space freed: the run resumes and ends exactly
    assert main(["--output-dir", str(run), "--resume"]) == 0
    assert_bitwise_equal(run, reference)


# ------------------------------------------------------------------------------------ two processes
def test_save_failing_on_one_process_stops_both(tmp_path):
    """Rank 1 cannot write its RNG file. Without agreement rank 0 would wait in a barrier for ever
    (no launcher here to kill it, as under SLURM or a hand-rolled launcher); both must stop with
    a clear error and leave step 2 as the newest checkpoint."""
    run, port = tmp_path / "two", str(free_port())
    args = [*ARGS, "train.batch_size=4", "--output-dir", str(run)]
    procs = []
    for rank in (0, 1):
        env = dict(fault_env(tmp_path, "random_states_1.pkl", "enospc", rank=1), RANK=str(rank),
                   LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port)
        procs.append(subprocess.Popen([sys.executable, driver(tmp_path), *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for proc in procs:
            outs.append(proc.communicate(timeout=120))
    finally:
        for proc in procs:
            if proc.poll() is None:  # hung: the failure this test exists to catch
                proc.kill()
                proc.wait()
    assert (tmp_path / "fault.marker").exists()
    assert [p.returncode for p in procs] == [2, 2], [o[1][-1500:] for o in outs]
    final = run / CHECKPOINTS / FAULT_STEP
    (err0,), (err1,) = ([line for line in o[1].splitlines() if line.startswith("error:")] for o in outs)
    assert err1.startswith(f"error: could not write checkpoint '{final}': No space left on device"), err1
    assert err0.startswith(f"error: could not write checkpoint '{final}': another process failed"), err0
    assert sorted(p.name for p in (run / CHECKPOINTS).iterdir()) == ["step_00000002"]
    assert_previous_is_loadable(run)


# ------------------------------------------------------------------------------------ swap
def test_interrupted_swap_puts_the_old_checkpoint_back(tmp_path):
    """Re-saving an existing step moves it to ``.tmp-old-step_N`` before renaming the new one in;
    a kill between the two renames must not lose step N."""
    root = tmp_path / CHECKPOINTS
    for name in (".tmp-old-step_00000004", ".tmp-step_00000004", ".tmp-step_00000006", "step_00000002"):
        (root / name).mkdir(parents=True)
        (root / name / META_FILE).write_text(json.dumps({"format": 1, "step": int(name[-8:])}))
    (root / ".tmp-old-step_00000002").mkdir()  # step 2 itself survived: this one is stale
    (root / ".tmp-old-step_00000002" / META_FILE).write_text("{}")
    clean_partial(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["step_00000002", "step_00000004"]
    assert read_meta(root / "step_00000002")["step"] == 2 and read_meta(root / "step_00000004")["step"] == 4
