"""Runs the bad-input corpus through the Python API and the CLI, and counts what happened.

:func:`bad_input_corpus.make_corpus` writes the bad inputs at run time (nothing binary is
committed) and says, for each, what must happen. :func:`run_api` and :func:`run_cli` run a
case and classify the run:

- ``clean error``: the expected exception class (CLI: exit 2 and one ``cwm: error:`` line on
  stderr, no traceback), with every expected word in the message;
- ``handled``: a case that must succeed did, with valid outputs;
- ``unexpected``: a clean failure or success, but not the one expected (wrong class or words);
- ``crash``: anything else: another exception, a traceback, another exit status, a sentinel file
  that a malicious pickle would create.

Every run gets an output folder holding a file that existed before; afterwards that file must be
byte-identical, a failed run must have added nothing (not even a temporary file), and a
successful run only valid files. Violations are counted as files lost or half-written.
:func:`interrupt_run` interrupts a real ``cwm flow`` with SIGINT, SIGTERM or SIGKILL part-way.

    python benchmarks/bad_inputs.py --out benchmarks/results/bad_inputs.json

tests/test_bad_inputs.py runs the same corpus (the CLI in-process, for speed).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_input_corpus import HUGE_COPIES, HUGE_SIDE, KEEP, Case, make_corpus  # noqa: E402

from cwm.errors import CWMError  # noqa: E402

__all__ = ["Case", "Run", "make_corpus", "run_api", "run_cli", "interrupt_run", "rerun_after_kill", "main"]
#: The CLI as this benchmark runs it: the console script's main(), with the harness's options
#: (a file made unreadable, where to write the peak memory) in front of ``--``.
CHILD = [sys.executable, str(Path(__file__).resolve()), "--child"]
CLI = [sys.executable, "-m", "cwm.cli.main"]


@dataclass
class Run:
    """The outcome of one case through one interface (``via`` "api" or "cli")."""

    case: str
    via: str
    outcome: str  # "clean error", "handled", "unexpected", "crash" or "skipped"
    detail: str  # the message, exit status or what went wrong
    files_lost_or_partial: int = 0
    exit_code: int | None = None
    seconds: float = 0.0
    peak_rss_mb: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------------- running
def prepare_out(case: Case, out: Path) -> dict[str, bytes]:
    """Create the run's output folder (or file) with its pre-existing files; return a snapshot."""
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    if case.out_is_file:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"not a folder")
    else:
        out.mkdir(parents=True)
        (out / KEEP).write_bytes(b"written before the run")
        for name, data in case.existing.items():
            (out / name).write_bytes(data)
    if case.sentinel is not None:
        case.sentinel.unlink(missing_ok=True)
    return snapshot(out)


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` (or ``out`` itself if a file): relative path -> bytes."""
    if out.is_file():
        return {".": out.read_bytes()}
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def is_temp_name(name: str) -> bool:
    """A name of :func:`cwm.atomic.atomic_write`'s temporaries (``.<stem>.tmp-<pid>-<hex><ext>``)."""
    return Path(name).name.startswith(".") and ".tmp-" in Path(name).name


def valid_file(path: Path) -> str | None:
    """None if ``path`` is a complete, readable output of its type; else what is wrong."""
    from cwm.flowio import read_flo
    from cwm.io import open_video, read_image

    try:
        if path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                for name in z.files:
                    z[name]
        elif path.suffix == ".png":
            read_image(path)
        elif path.suffix == ".flo":
            read_flo(path)
        elif path.suffix == ".mp4":
            with open_video(path) as v:
                v.get([v.num_frames - 1])
        elif path.suffix == ".json":
            json.loads(path.read_text())
    except Exception as e:  # noqa: BLE001 - any failure to read back means a broken file
        return f"{path.name}: {type(e).__name__}: {e}"
    return None


def file_problems(case: Case, before: dict[str, bytes], out: Path, succeeded: bool,
                  expected: tuple[str, ...] = ()) -> list[str]:
    """Files lost or half-written by a run: changed or removed pre-existing files; after a
    failure, anything new; after a success, temporaries, invalid files, missing ``expected``."""
    after = snapshot(out) if out.exists() else {}
    problems = [f"{name} changed or vanished" for name, data in before.items() if after.get(name) != data]
    new = sorted(set(after) - set(before))
    if not succeeded:
        return problems + [f"{name} left by a failed run" for name in new]
    problems += [f"{name} is a leftover temporary file" for name in new if is_temp_name(name)]
    problems += [p for name in new if not is_temp_name(name) and (p := valid_file(out / name))]
    return problems + [f"{name} was not written" for name in expected if name not in after]


@contextlib.contextmanager
def unreadable(path: Path | None) -> Iterator[None]:
    """Make ``path`` unreadable for the ``with`` body: its mode is 0 already, but root ignores
    modes, so then cwm's file checks get the PermissionError a user would."""
    if path is None or os.geteuid() != 0:
        yield
        return
    import cwm.video

    real = open

    def fake_open(p, *args, **kwargs):
        if Path(p).resolve() == path.resolve():
            raise PermissionError(13, "Permission denied", str(p))
        return real(p, *args, **kwargs)

    cwm.video.open = fake_open
    try:
        yield
    finally:
        del cwm.video.open


def run_api(case: Case, out: Path) -> Run:
    """Run ``case.api`` in this process and classify it (see the module notes)."""
    before = prepare_out(case, out)
    start = time.perf_counter()
    result, exc = None, None
    with unreadable(case.unreadable):
        try:
            result = case.api(out)
        except Exception as e:  # noqa: BLE001 - classified below
            exc = e
    seconds = time.perf_counter() - start
    if case.error is None and exc is None and case.check is not None:
        try:
            case.check(result)
        except AssertionError as e:
            exc = e
    outcome, detail = _classify_api(case, exc)
    outcome, detail = _sentinel(case, outcome, detail)
    problems = file_problems(case, before, out, succeeded=exc is None)
    return Run(case.name, "api", outcome, "; ".join([detail, *problems]), len(problems), seconds=seconds)


def _classify_api(case: Case, exc: BaseException | None) -> tuple[str, str]:
    if case.error is None:
        if exc is None:
            return "handled", "ok"
        kind = "unexpected" if isinstance(exc, (CWMError, AssertionError)) else "crash"
        return kind, f"{type(exc).__name__}: {exc}"
    if exc is None:
        return "unexpected", "no error raised"
    text = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, CWMError):
        return "crash", text + " | " + "".join(traceback.format_exception(exc)).replace("\n", " | ")[-600:]
    if not isinstance(exc, case.error) or "\n" in str(exc) or not all(w in str(exc) for w in case.words):
        return "unexpected", f"{text} (expected {case.error.__name__} with {list(case.words)})"
    return "clean error", text


def _sentinel(case: Case, outcome: str, detail: str) -> tuple[str, str]:
    if case.sentinel is not None and case.sentinel.exists():
        return "crash", f"CODE RAN: {case.sentinel.name} was created; {detail}"
    return outcome, detail


def cli_argv(case: Case, out: Path) -> list[str]:
    return [*case.cli, "-o", str(out)]


def run_cli(case: Case, out: Path, cwd: Path, subprocess_: bool = True) -> Run:
    """Run ``cwm <case.cli> -o OUT`` in a subprocess (or in this process) and classify it."""
    before = prepare_out(case, out)
    argv = cli_argv(case, out)
    start = time.perf_counter()
    peak = None
    if subprocess_:
        code, stdout, stderr, peak = _cli_subprocess(argv, cwd, case.unreadable)
    else:
        code, stdout, stderr = cli_in_process(argv, cwd, case.unreadable)
    seconds = time.perf_counter() - start
    outcome, detail = _sentinel(case, *classify_cli(case, code, stderr))
    problems = file_problems(case, before, out, succeeded=code == 0, expected=case.outputs)
    return Run(case.name, "cli", outcome, "; ".join([detail, *problems]), len(problems), code,
               seconds, peak)


def error_lines(stderr: str) -> list[str]:
    """The lines a terminal shows (a cleared progress bar, drawn with \\r, is gone)."""
    lines = [line.rsplit("\r", 1)[-1] for line in stderr.split("\n")]
    return [line for line in lines if line.strip()]


def classify_cli(case: Case, code: int | None, stderr: str) -> tuple[str, str]:
    lines = error_lines(stderr)
    if code not in (0, 2) or "Traceback" in stderr:
        return "crash", f"exit {code}: " + " | ".join(lines)[-800:]
    if case.error is None:
        if code != 0:
            return "unexpected", f"exit {code}: {' | '.join(lines)}"
        if case.warning and not any(case.warning in line for line in lines):
            return "unexpected", f"no warning '{case.warning}' on stderr: {' | '.join(lines)}"
        return "handled", "exit 0" + (f": {lines[-1]}" if lines else "")
    if code != 2:
        return "unexpected", "exit 0: no error"
    if len(lines) != 1 or not lines[0].startswith("cwm: error: "):
        return "unexpected", f"stderr is not one error line: {' | '.join(lines)}"
    if not all(w in lines[0] for w in case.words):
        return "unexpected", f"{lines[0]} (expected {list(case.words)})"
    return "clean error", lines[0]


def _cli_subprocess(argv: list[str], cwd: Path, locked: Path | None) -> tuple[int, str, str, float | None]:
    """Run the CLI in a fresh interpreter; returns (exit status, stdout, stderr, peak RSS in MB)."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak"
        cmd = [*CHILD, "--peak-file", str(peak_file)]
        if locked is not None:
            cmd += ["--unreadable", str(locked)]
        proc = subprocess.run([*cmd, "--", *argv], cwd=cwd, capture_output=True, env=env, timeout=600)
        peak = float(peak_file.read_text()) if peak_file.exists() else None
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"), peak


def _child(argv: list[str], locked: Path | None, peak_file: Path | None) -> int:
    """The CLI as the console script runs it, with ``locked`` unreadable; writes the process's
    peak resident memory (MB, this program only: VmHWM) to ``peak_file`` on the way out."""
    from cwm.cli.main import main as cwm_main

    try:
        with unreadable(locked):
            return cwm_main(argv)
    finally:
        if peak_file is not None:
            status = Path("/proc/self/status").read_text()
            kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
            peak_file.write_text(f"{kb / 1024:.1f}")


def cli_in_process(argv: list[str], cwd: Path, locked: Path | None) -> tuple[int, str, str]:
    """Run ``cwm.cli.main.main`` here, capturing stdout and stderr (native writes included); an
    exception that escapes main() is a bug: it comes back as exit status 1 with its traceback."""
    from cwm.cli.main import main

    with captured() as got, unreadable(locked), _chdir(cwd):
        try:
            code = main(argv)
        except Exception:  # noqa: BLE001 - what a user would see as a traceback
            traceback.print_exc()
            code = 1
    return code, got["stdout"], got["stderr"]


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextlib.contextmanager
def captured() -> Iterator[dict[str, str]]:
    """Capture sys.stdout, sys.stderr and file descriptor 2 (native libraries' writes) as text
    in the yielded dict's "stdout" and "stderr" once the ``with`` block ends."""
    got: dict[str, str] = {}
    py_out, py_err = io.StringIO(), io.StringIO()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as native:
        saved = os.dup(2)
        os.dup2(native.fileno(), 2)
        try:
            with contextlib.redirect_stdout(py_out), contextlib.redirect_stderr(py_err):
                yield got
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            native.seek(0)
            got["stdout"] = py_out.getvalue()
            got["stderr"] = py_err.getvalue() + native.read().decode(errors="replace")


# --------------------------------------------------------------------------------- interruptions
def interrupt_run(folder: Path, sig: int, timeout: float = 180.0) -> dict[str, Any]:
    """Start ``cwm flow long.mp4 --raw npy`` (made by :func:`make_corpus`; one file per pair, so
    a killed run leaves finished pairs), wait until two pairs are written,
    send ``sig``, and report what is left.

    Returns a dict: ``exit`` (the status; -9 for SIGKILL), ``stderr``, ``final`` (the files under
    final names, relative to the output folder), ``invalid`` (those that fail to read back),
    ``temporaries`` (hidden temporary files left), ``keep_intact`` (the pre-existing file is
    byte-identical) and ``finished_first`` (the run ended before the signal: no test).
    """
    out = folder / "out" / f"interrupt_{signal.Signals(sig).name}"
    before = prepare_out(Case("interrupt", "", None), out)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    with tempfile.TemporaryFile() as err:
        # SIGINT at its default in the child: a shell's background job (`cmd &`) starts with it
        # ignored, and Python then leaves it ignored, as a terminal's Ctrl-C never finds it.
        proc = subprocess.Popen([*CLI, "flow", "long.mp4", "--raw", "npy", "-o", str(out)], cwd=folder,
                                stdout=subprocess.DEVNULL, stderr=err, env=env,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + timeout
        while not (out / "raw" / "000001.npy").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        finished_first = proc.poll() is not None
        proc.send_signal(sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != KEEP)
    final = [f for f in files if not is_temp_name(f)]
    return {"signal": signal.Signals(sig).name, "exit": proc.returncode, "stderr": stderr,
            "final": final, "invalid": [p for f in final if (p := valid_file(out / f))],
            "temporaries": [f for f in files if is_temp_name(f)],
            "keep_intact": snapshot(out).get(KEEP) == before[KEEP], "finished_first": finished_first,
            "out": str(out)}


def rerun_after_kill(folder: Path, out: Path) -> dict[str, Any]:
    """After a SIGKILL: rerun without --overwrite (must refuse, changing nothing), then with it
    (must complete, removing the killed run's temporaries)."""
    before = snapshot(out)
    argv = ["flow", "long.mp4", "--raw", "npy", "-q", "-o", str(out)]
    refused = subprocess.run([*CLI, *argv], cwd=folder, capture_output=True, text=True, timeout=300)
    untouched = snapshot(out) == before
    again = subprocess.run([*CLI, *argv, "--overwrite"], cwd=folder, capture_output=True, text=True, timeout=600)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != KEEP)
    return {"refused_exit": refused.returncode, "refused_stderr": refused.stderr, "untouched": untouched,
            "overwrite_exit": again.returncode, "overwrite_stderr": again.stderr, "files": files,
            "invalid": [p for f in files if (p := valid_file(out / f))]}


def interrupt_rows(folder: Path) -> list[Run]:
    """SIGINT, SIGTERM and SIGKILL of a real ``cwm flow`` run, as table rows."""
    rows = []
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)):
        start = time.perf_counter()
        r = interrupt_run(folder, sig)
        bad = [*r["invalid"], *([] if r["keep_intact"] else [f"{KEEP} changed"])]
        if sig != signal.SIGKILL:  # caught: the run removes what it wrote, temporaries included
            bad += [f"{f} left behind" for f in r["final"] + r["temporaries"]]
        elif "flow.mp4" in r["final"]:
            bad.append("flow.mp4 exists although the run was killed before finishing")
        ok = r["exit"] == code and not r["finished_first"] and "Traceback" not in r["stderr"]
        detail = (f"exit {r['exit']}; {len(r['final'])} finished files kept, "
                  f"{len(r['temporaries'])} temporaries left")
        if sig == signal.SIGKILL:
            again = rerun_after_kill(folder, Path(r["out"]))
            ok = ok and again["refused_exit"] == 2 and again["untouched"] and again["overwrite_exit"] == 0
            bad += again["invalid"] + [f"{f} left after the rerun" for f in again["files"] if is_temp_name(f)]
            detail += (f"; rerun: exit {again['refused_exit']} without --overwrite, "
                       f"exit {again['overwrite_exit']} with it, temporaries cleaned")
        outcome = "clean error" if ok else ("crash" if "Traceback" in r["stderr"] else "unexpected")
        rows.append(Run(f"interrupt_{signal.Signals(sig).name}", "cli", outcome, "; ".join([detail, *bad]),
                        len(bad), r["exit"], time.perf_counter() - start))
    return rows


# --------------------------------------------------------------------------------- the report
def summarise(cases: list[Case], rows: list[Run]) -> dict[str, Any]:
    ran = [r for r in rows if r.outcome != "skipped"]
    count = lambda outcome: sum(r.outcome == outcome for r in ran)  # noqa: E731
    return {"cases": sum(c.skip is None for c in cases) + sum(r.case.startswith("interrupt_") for r in rows),
            "runs": len(ran), "clean_errors": count("clean error"), "handled": count("handled"),
            "unexpected": count("unexpected"), "crashes": count("crash"),
            "files_lost_or_partial": sum(r.files_lost_or_partial for r in ran),
            "skipped": [f"{c.name}: {c.skip}" for c in cases if c.skip],
            "rows": [r.as_dict() for r in rows]}


def print_table(summary: dict[str, Any]) -> None:
    for r in summary["rows"]:
        print(f"{r['case']:<36} {r['via']:<4} {r['outcome']:<12} {r['seconds']:6.1f}s  {r['detail'][:110]}")
    print()
    print("| bad inputs tried | runs (API + CLI) | clean errors | handled as documented | unexpected "
          "| crashes | files lost or half-written |")
    print("|---|---|---|---|---|---|---|")
    s = summary
    print(f"| {s['cases']} | {s['runs']} | {s['clean_errors']} | {s['handled']} | {s['unexpected']} "
          f"| {s['crashes']} | {s['files_lost_or_partial']} |")
    for skipped in s["skipped"]:
        print(f"skipped: {skipped}")
    if "huge_image_memory" in s:
        print(f"{HUGE_SIDE}x{HUGE_SIDE} image, memory (MB): {s['huge_image_memory']}")


def image_read_peak_mb(path: Path, max_side: int | None) -> tuple[float, float]:
    """Peak resident memory (MB, VmHWM) of a fresh interpreter after its imports, and after
    ``read_image(path, max_side)``: their difference is what reading the image cost at most."""
    code = ("import sys, cwm.io\n"
            "def hwm():\n"
            "    s = open('/proc/self/status').read().split('VmHWM:')[1]\n"
            "    return int(s.split()[0]) / 1024\n"
            "before = hwm()\n"
            "cwm.io.read_image(sys.argv[1], max_side=None if sys.argv[2] == 'None' else int(sys.argv[2]))\n"
            "print(before, hwm())\n")
    out = subprocess.run([sys.executable, "-c", code, str(path), str(max_side)], capture_output=True,
                         text=True, timeout=300, check=True)
    before, after = map(float, out.stdout.split())
    return before, after


def huge_image_limit_mb() -> float:
    """The memory that reading the huge image may take: :data:`HUGE_COPIES` uint8 RGB copies."""
    return HUGE_COPIES * HUGE_SIDE * HUGE_SIDE * 3 / 2 ** 20


def run_corpus(folder: Path, in_process: bool = False) -> tuple[list[Case], list[Run], dict[str, Any]]:
    """Write the corpus into ``folder``, run every case through the API and the CLI, then the
    interruptions; returns the cases, the rows, and the memory measurements of the huge image."""
    cases = make_corpus(folder)
    rows = []
    for case in cases:
        for via in ("api", "cli"):
            if getattr(case, via) is None:
                continue
            if case.skip:
                rows.append(Run(case.name, via, "skipped", case.skip))
                continue
            out = folder / "out" / f"{case.name}_{via}"
            rows.append(run_api(case, out) if via == "api" else
                        run_cli(case, out, folder, subprocess_=not in_process))
            print(f"{case.name:<36} {via:<4} {rows[-1].outcome}", file=sys.stderr)
    rows += interrupt_rows(folder)
    memory = _check_huge_image_memory(folder, rows)
    return cases, rows, memory


def _check_huge_image_memory(folder: Path, rows: list[Run]) -> dict[str, Any]:
    """Measure what reading the huge image costs (API: read_image with and without max_side; CLI:
    its peak against the same command on a small pair); a cost over the limit makes the row
    ``unexpected``."""
    limit = huge_image_limit_mb()
    memory: dict[str, Any] = {"limit_mb": round(limit, 1)}
    for max_side in (64, None):
        before, after = image_read_peak_mb(folder / "huge.png", max_side)
        memory[f"read_image_max_side_{max_side}_mb"] = round(after - before, 1)
    cli = {r.case: r for r in rows if r.via == "cli"}
    peaks = {name: cli[name].peak_rss_mb for name in ("huge_image", "gray_png") if name in cli}
    if all(peaks.get(name) for name in ("huge_image", "gray_png")):  # the same command, huge or small input
        memory["cli_peak_mb"] = {"huge_pair": peaks["huge_image"], "small_pair": peaks["gray_png"]}
        memory["cli_extra_mb"] = round(peaks["huge_image"] - peaks["gray_png"], 1)
    api = next((r for r in rows if r.case == "huge_image" and r.via == "api"), None)
    for key, row in (("read_image_max_side_64_mb", api), ("cli_extra_mb", cli.get("huge_image"))):
        if row is not None and memory.get(key, 0) > limit:
            row.outcome = "unexpected"
            row.detail += f"; used {memory[key]} MB, over the {limit:.0f} MB limit"
    return memory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the summary and every row as JSON here")
    parser.add_argument("--in-process", action="store_true",
                        help="run the CLI in this process (faster; a native crash would end the run)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unreadable", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--peak-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one CLI run of the benchmark (see _cli_subprocess)
        return _child(args.rest[1:] if args.rest[:1] == ["--"] else args.rest, args.unreadable, args.peak_file)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cwm_bad_inputs_") as tmp:
        cases, rows, memory = run_corpus(Path(tmp), args.in_process)
    summary = summarise(cases, rows)
    summary.update(seconds=round(time.perf_counter() - start, 1),
                   cli="in-process" if args.in_process else "subprocess",
                   unreadable_simulated=os.geteuid() == 0, huge_image_memory=memory)
    print_table(summary)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["crashes"] == 0 and summary["unexpected"] == 0 and summary["files_lost_or_partial"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
