"""How this process was launched: catch ``accelerate launch --cpu --num_processes N`` (N > 1).

Accelerate 1.x starts ONE process for ``--cpu`` whatever ``--num_processes`` says (its simple
launcher; several CPU processes need MPI there), so such a run silently trains alone. What works
on a host without a GPU is ``--multi_gpu --num_processes N``: :func:`pretrain.train._accelerator`
sees it was launched as one of several processes with no accelerator and forms a gloo group on
the CPU (pretrain/README.md, "scale-out").

The launcher leaves its mark in the environment: ``ACCELERATE_USE_CPU`` true, ``MASTER_ADDR`` set
(only when more than one process or machine was asked for), and none of the variables a
multi-process launcher sets for each process (``LOCAL_RANK``, ``WORLD_SIZE``, MPI's sizes). The
number asked for is read from the launcher's command line (the parent process, where readable).
"""
from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence

#: Set by launchers that start one process per rank (torchrun, MPI): then nothing is wrong.
RANK_VARIABLES = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def single_process_warning(environ: Mapping[str, str] | None = None, launcher: Sequence[str] | None = None,
                           argv: Sequence[str] | None = None) -> str | None:
    """One line warning that ``accelerate launch --cpu`` started one process of several asked for,
    naming the command that works; None when the launch is fine.

    Args:
        environ: the environment (default ``os.environ``).
        launcher: the launching command's arguments (default: the parent process's command line,
            read from ``/proc`` where there is one; None if unreadable).
        argv: this program's ``sys.argv`` (default ``sys.argv``), to repeat its arguments.
    """
    env = os.environ if environ is None else environ
    if env.get("ACCELERATE_USE_CPU", "").lower() not in ("1", "true", "yes") or "MASTER_ADDR" not in env:
        return None
    if any(name in env for name in RANK_VARIABLES):
        return None
    launcher = _parent_command() if launcher is None else launcher
    asked = requested_processes(launcher) if launcher else None
    if asked is not None and asked <= 1:
        return None
    n = str(asked) if asked else "N"
    return (f"warning: `accelerate launch --cpu --num_processes {n}` starts ONE process (Accelerate runs "
            f"several only with --multi_gpu, which trains over gloo on a host without a GPU); for {n} CPU "
            f"processes run: accelerate launch --multi_gpu --num_processes {n} {_program(argv)}")


def requested_processes(launcher: Sequence[str]) -> int | None:
    """``--num_processes`` (or ``--num-processes``) of an ``accelerate launch`` command line."""
    for i, arg in enumerate(launcher):
        m = re.fullmatch(r"--num[_-]processes(?:=(\d+))?", arg)
        if m:
            value = m.group(1) or (launcher[i + 1] if i + 1 < len(launcher) else "")
            return int(value) if value.isdigit() else None
    return None


def _parent_command() -> list[str] | None:
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            parts = f.read().split(b"\0")
    except OSError:
        return None
    return [p.decode(errors="replace") for p in parts if p]


def _program(argv: Sequence[str] | None) -> str:
    """This program as ``accelerate launch`` takes it: ``-m pretrain ARGS`` or ``SCRIPT ARGS``."""
    argv = list(sys.argv if argv is None else argv)
    script = argv[0] if argv else "-m pretrain"
    if script.endswith(os.path.join("pretrain", "__main__.py")) or script in ("-m", "-c", ""):
        script = "-m pretrain"
    return " ".join([script, *(shlex.quote(a) for a in argv[1:])])
