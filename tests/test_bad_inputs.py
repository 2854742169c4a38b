"""The bad-input corpus (benchmarks/bad_input_corpus.py) through the Python API and the CLI, and
real interruptions of ``cwm flow``.

Each case asserts the exception class and the message's words (file name and problem), the CLI's
exit status 2 and single stderr line, and that the output folder is as it was: its pre-existing
file byte-identical, nothing new (not even a temporary file) after a failure, only valid files
after a success. The CLI runs in-process here (the benchmark runs it in subprocesses); the
interruption tests start real subprocesses.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bad_inputs  # noqa: E402
from bad_input_corpus import HUGE_SIDE, KEEP, LONG_FRAMES, Case, corpus_cases, make_corpus  # noqa: E402

from cwm.errors import CWMError, InputError  # noqa: E402

#: (case, interface) pairs, known without writing the files (corpus_cases touches no file).
RUNS = [pytest.param(c.name, via, id=f"{c.name}-{via}")
        for c in corpus_cases(Path("corpus")) for via in ("api", "cli") if getattr(c, via) is not None]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Case]]:
    folder = tmp_path_factory.mktemp("bad_inputs")
    return folder, {c.name: c for c in make_corpus(folder)}


def test_the_corpus_has_what_the_issue_lists():
    names = {p.values[0] for p in RUNS}
    for needed in ("empty_video", "random_bytes_video", "truncated_video_header", "av1_video", "one_frame_video",
                   "frames_change_size", "gray_png", "rgba_png", "gray16_png", "huge_image", "mismatched_pair",
                   "nan_tensor", "inf_tensor", "folder_as_video", "unreadable_image", "pickle_runs_code",
                   "wrong_shapes", "future_config", "unknown_config_field"):
        assert needed in names
    assert len({p.values[0] for p in RUNS if p.values[1] == "cli"}) >= 25


@pytest.mark.parametrize("name,via", RUNS)
def test_bad_input(corpus, name, via):
    folder, cases = corpus
    case = cases[name]
    if case.skip:
        pytest.skip(case.skip)
    out = folder / "out" / f"{name}_{via}"
    before = bad_inputs.prepare_out(case, out)
    if via == "api":
        _api(case, out)
    else:
        _cli(case, out, folder)
    if case.sentinel is not None:
        assert not case.sentinel.exists(), "the pickle ran code"
    assert bad_inputs.file_problems(case, before, out, succeeded=case.error is None,
                                    expected=case.outputs if via == "cli" else ()) == []


def _api(case: Case, out: Path) -> None:
    with bad_inputs.unreadable(case.unreadable):
        if case.error is None:
            case.check(case.api(out))
            return
        with pytest.raises(CWMError) as e:
            case.api(out)
    assert type(e.value) is case.error or isinstance(e.value, case.error), repr(e.value)
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in case.words), (message, case.words)


def _cli(case: Case, out: Path, folder: Path) -> None:
    code, _, stderr = bad_inputs.cli_in_process(bad_inputs.cli_argv(case, out), folder, case.unreadable)
    lines = bad_inputs.error_lines(stderr)
    assert "Traceback" not in stderr, stderr
    if case.error is None:
        assert code == 0, stderr
        assert not any(line.startswith("cwm: error") for line in lines), stderr
        if case.warning:
            assert any(case.warning in line for line in lines), stderr
        return
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("cwm: error: "), stderr
    assert all(w in lines[0] for w in case.words), (lines[0], case.words)


# ---------------------------------------------------------------------- the benchmark's judge
def _raises(exc: Exception, before):
    """An API call ``call(out)`` that runs ``before(out)``, then raises ``exc``."""
    def call(out: Path):
        before(out)
        raise exc
    return call


def test_the_classifier_counts_crashes_and_partial_files(tmp_path):
    """The benchmark's zeros mean something: a bug, a wrong class, a sentinel and a stray file
    are each caught."""
    sentinel = tmp_path / "code_ran"
    cases = [Case("bug", "", InputError, ("x",), api=_raises(ZeroDivisionError("bug"), lambda out: None)),
             Case("wrong", "", InputError, ("x",), api=_raises(CWMError("x"), lambda out: None)),
             Case("words", "", InputError, ("needle",), api=_raises(InputError("hay"), lambda out: None)),
             Case("ran", "", InputError, ("x",), sentinel=sentinel,
                  api=_raises(InputError("x"), lambda out: sentinel.write_text("!"))),
             Case("stray", "", InputError, ("x",),
                  api=_raises(InputError("x"), lambda out: (out / ".a.tmp-1-0.png").write_bytes(b""))),
             Case("keep", "", InputError, ("x",),
                  api=_raises(InputError("x"), lambda out: (out / KEEP).write_bytes(b"changed"))),
             Case("fine", "", InputError, ("x",), api=_raises(InputError("x"), lambda out: None))]
    runs = {c.name: bad_inputs.run_api(c, tmp_path / c.name) for c in cases}
    assert runs["bug"].outcome == "crash" and "ZeroDivisionError" in runs["bug"].detail
    assert runs["wrong"].outcome == "unexpected" and runs["words"].outcome == "unexpected"
    assert runs["ran"].outcome == "crash" and "CODE RAN" in runs["ran"].detail
    assert runs["stray"].files_lost_or_partial == 1 and runs["keep"].files_lost_or_partial == 1
    assert runs["fine"].outcome == "clean error" and runs["fine"].files_lost_or_partial == 0
    case = Case("c", "", InputError, ("x",), cli=["predict"])
    assert bad_inputs.classify_cli(case, 1, "Traceback (most recent call last):\n...")[0] == "crash"
    assert bad_inputs.classify_cli(case, -11, "")[0] == "crash"
    assert bad_inputs.classify_cli(case, 2, "noise from a library\ncwm: error: x\n")[0] == "unexpected"
    assert bad_inputs.classify_cli(case, 2, "bar 10%\rbar 20%\r      \rcwm: error: x\n")[0] == "clean error"


# ---------------------------------------------------------------------- memory of a huge image
def test_a_huge_image_is_shrunk_within_a_few_copies(corpus):
    folder, _ = corpus
    copy_mb = HUGE_SIDE * HUGE_SIDE * 3 / 2 ** 20  # one uint8 RGB copy: 183 MB
    before, after = bad_inputs.image_read_peak_mb(folder / "huge.png", max_side=64)
    assert after - before < 2 * copy_mb, (before, after)  # PIL's 4-byte decode, then the small result
    before, after = bad_inputs.image_read_peak_mb(folder / "huge.png", max_side=None)
    assert after - before < bad_inputs.huge_image_limit_mb(), (before, after)


# ---------------------------------------------------------------------- interruptions
def test_sigkill_leaves_only_complete_files_and_a_rerun_works(corpus):
    folder, _ = corpus
    r = bad_inputs.interrupt_run(folder, signal.SIGKILL)
    assert not r["finished_first"] and r["exit"] == -signal.SIGKILL, r
    assert r["keep_intact"]
    assert "raw/000001.npy" in r["final"] and "flow.mp4" not in r["final"], r["final"]
    assert r["invalid"] == [], r["invalid"]  # every file under a final name reads back whole
    for name in r["final"]:
        assert np.load(Path(r["out"]) / name).shape == (32, 40, 2)
    again = bad_inputs.rerun_after_kill(folder, Path(r["out"]))
    assert again["refused_exit"] == 2 and "--overwrite" in again["refused_stderr"] and again["untouched"]
    assert again["overwrite_exit"] == 0, again["overwrite_stderr"]
    assert again["invalid"] == [] and not any(bad_inputs.is_temp_name(f) for f in again["files"])
    assert "flow.mp4" in again["files"] and sum(f.startswith("raw/") for f in again["files"]) == LONG_FRAMES - 1


def test_sigint_of_a_real_run_exits_130_and_removes_its_files(corpus):
    folder, _ = corpus
    r = bad_inputs.interrupt_run(folder, signal.SIGINT)
    assert not r["finished_first"] and r["exit"] == 130, r
    assert "interrupted" in r["stderr"] and "Traceback" not in r["stderr"]
    assert r["final"] == [] and r["temporaries"] == [] and r["keep_intact"]


def test_sigterm_exits_143_and_removes_its_files(tmp_path, monkeypatch):
    """SIGTERM (``kill PID``) cleans up like Ctrl-C; the signal is real, sent to this process."""
    from cwm.cli.main import _raise_terminated, main
    from cwm.io import write_video

    calls = []

    class Result:
        def __init__(self, h, w):
            self.flow = np.zeros((h, w, 2), np.float32)
            self.occlusion = np.zeros((h, w), bool)
            self.confidence = np.ones((h, w), np.float32)

    def flow(predictor, f0, f1, **kw):
        calls.append(1)
        if len(calls) == 3:
            assert signal.getsignal(signal.SIGTERM) is _raise_terminated  # else the kill is fatal
            os.kill(os.getpid(), signal.SIGTERM)
        return Result(*f0.shape[:2])

    monkeypatch.setattr("probes.flow.flow", flow)
    write_video(tmp_path / "v.mp4", [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(6)], fps=5)
    code = main(["flow", str(tmp_path / "v.mp4"), "-o", str(tmp_path / "o")])
    assert code == 143 and len(calls) == 3
    assert not (tmp_path / "o").exists()  # the two finished pairs are removed again
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_an_interrupt_just_after_the_rename_is_still_rolled_back(tmp_path, monkeypatch):
    """Ctrl-C can land between the rename that completes a file and the writer's return."""
    import cwm.atomic
    from cwm.cli.common import Outputs, run_outputs

    real_commit = cwm.atomic._commit

    def commit_then_interrupt(tmp, final, overwrite):
        real_commit(tmp, final, overwrite)
        raise KeyboardInterrupt

    outputs = Outputs(tmp_path / "o", overwrite=False)
    first, second = outputs.plan("a.npy", "b.npy")
    outputs.check()
    outputs.array(first, np.zeros(3))
    monkeypatch.setattr(cwm.atomic, "_commit", commit_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_outputs(outputs, lambda: outputs.array(second, np.ones(3)))
    assert not (tmp_path / "o").exists()


def test_a_rerun_removes_the_temporaries_of_a_killed_run_only(tmp_path):
    """A SIGKILL mid-write leaves a hidden temporary file; the next run's check removes it if its
    writer is dead, and leaves those of live processes alone."""
    import subprocess

    from cwm.cli.common import Outputs

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    (tmp_path / "raw").mkdir()
    stale = tmp_path / f".flow.tmp-{int(dead.stdout)}-0123abcd.mp4"
    live = tmp_path / "raw" / f".000000.tmp-{os.getpid()}-0123abcd.npy"
    other = tmp_path / f".notes.tmp-{int(dead.stdout)}-0123abcd.txt"  # not a planned output's
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    outputs = Outputs(tmp_path, overwrite=False)
    outputs.plan("flow.mp4", "raw/000000.npy")
    outputs.check()
    assert not stale.exists() and live.exists() and other.exists()
