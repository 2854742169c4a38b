"""``cwm env``: versions, devices and paths, to paste into bug reports (like ``accelerate env``)."""
from __future__ import annotations

import argparse
import importlib
import platform
import sys

from cwm.cli.common import add_command

EXAMPLES = """\
cwm env
cwm env > env.txt     # attach to a bug report
"""
LIBRARIES = ("torch", "timm", "numpy", "cv2", "decord", "av", "accelerate", "safetensors")


def register(sub) -> argparse.ArgumentParser:
    return add_command(sub, "env", "print versions, devices and paths for bug reports", EXAMPLES)


def _version(module: str) -> str:
    try:
        return str(getattr(importlib.import_module(module), "__version__", "unknown version"))
    except Exception as e:  # a broken install is exactly what this report should show
        return f"not available ({type(e).__name__})"


def _cpu_bf16() -> str:
    """Whether the CPU computes bf16 natively (bf16 autocast pays off) or emulates it."""
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # private; absent in some builds
    if probe is None:
        return "unknown"
    return "native (AVX512-BF16)" if probe() else "emulated (slow)"


def report() -> list[tuple[str, str]]:
    """``(key, value)`` rows of the environment report."""
    import torch

    import cwm
    from cwm import hub, video

    rows = [("cwm", cwm.__version__), ("python", sys.version.split()[0]),
            ("platform", platform.platform())]
    rows += [("opencv" if m == "cv2" else m, _version(m)) for m in LIBRARIES]
    cuda = torch.cuda.is_available()
    rows.append(("cuda available", "yes" if cuda else "no"))
    if cuda:
        rows += [("cuda version", str(torch.version.cuda)),
                 ("gpus", ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))),
                 ("bf16 (cuda)", "yes" if torch.cuda.is_bf16_supported() else "no")]
    rows.append(("default device", "cuda" if cuda else "cpu"))
    rows.append(("cpu capability", str(torch.backends.cpu.get_cpu_capability())))
    rows.append(("bf16 (cpu)", _cpu_bf16()))
    rows.append(("torch threads", str(torch.get_num_threads())))
    backends = [b for b, m in (("decord", "decord"), ("pyav", "av"), ("opencv", "cv2"))
                if not _version(m).startswith("not available")]
    rows.append(("video backends", ", ".join(backends) or "none"))
    rows.append(("video backend order", ", ".join(video.BACKENDS)))
    rows.append(("weights cache", str(hub.cache_dir())))
    rows.append(("embedded model", "present" if hub.is_cached("default") else
                 f"missing ({hub.EMBEDDED_DIR / 'default'})"))
    cached = [n for n, e in hub.WEIGHTS.items() if e.url and hub.is_cached(n)]
    rows.append(("downloaded weights", ", ".join(cached) or "none"))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = report()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key + ':':<{width + 1}} {value}")
    return 0
