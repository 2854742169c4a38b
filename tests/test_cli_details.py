"""CLI and API details a new user hit (issue 13, item 7): ``--size`` that would enlarge, the
aspect-ratio note, ``cwm depth --max-flow``, errors that name the Python argument in the API and
the flag on the command line, one ``save(path, overwrite=False)`` contract for every result, and
raw flow in one streamed ``.npz`` per video.

Uses the tiny random model and inputs of ``tests/test_cli.py`` (its ``data`` fixture).
"""
from __future__ import annotations

import numpy as np
import pytest

from cwm.errors import InputError, OutputExistsError
from test_cli import FRAMES, H, W, data, files, one_error_line, run  # noqa: F401  (data: a fixture)


# ------------------------------------------------------------------ overwrite: argument vs flag
def test_the_library_names_the_argument_and_the_cli_the_flag(capsys, data, tmp_path, monkeypatch):
    from cwm.cli.outputs import Outputs
    from cwm.io import write_image

    target = tmp_path / "mine.png"
    write_image(target, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(OutputExistsError) as e:
        write_image(target, np.zeros((4, 4, 3), np.uint8))
    assert str(e.value) == f"cannot write '{target}': file exists; pass overwrite=True to replace it"
    assert e.value.path == target

    # A file that appears between the CLI's up-front check and the write (another program):
    # the library's refusal reaches the user worded with the flag.
    check = Outputs.check

    def check_then_someone_writes(self):
        check(self)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "prediction.png").write_bytes(b"someone else's")

    monkeypatch.setattr(Outputs, "check", check_then_someone_writes)
    out = tmp_path / "o"
    code, _, err = run(capsys, "predict", data["f0"], data["f1"], "--weights", data["weights"], "-o", out)
    assert code == 2
    assert one_error_line(err) == (f"cwm: error: output '{out / 'prediction.png'}' already exists; "
                                   "pass --overwrite to replace it")
    assert files(out) == ["prediction.png"] and (out / "prediction.png").read_bytes() == b"someone else's"


# ------------------------------------------------------------------ one save() contract
def _results() -> dict[str, object]:
    from probes.depth import DepthResult
    from probes.results import FlowResult, TrackResult
    from probes.segments import SegmentResult

    rng = np.random.default_rng(0)
    flow = rng.normal(size=(6, 8, 2)).astype(np.float32)
    occ, conf = np.zeros((6, 8), bool), np.ones((6, 8), np.float32)
    pts = np.array([[1.0, 2.0]], np.float32)
    return {
        "flow": FlowResult(flow, occ, conf),
        "track": TrackResult(pts, pts + 1, np.array([True]), np.array([0.9], np.float32)),
        "depth": DepthResult(conf, conf, flow, flow, np.eye(3), stereo=True),
        "segment": SegmentResult(occ[None], np.ones(1, np.float32), pts, conf[None], np.full(1, 0.5, np.float32),
                                 {}, np.zeros((6, 8, 3), np.uint8)),
    }


SAVES = [("flow", ".npy"), ("flow", ".npz"), ("flow", ".flo"), ("flow", ".png"), ("track", ".npy"),
         ("track", ".npz"), ("depth", ".npy"), ("depth", ".npz"), ("depth", ".png"), ("segment", ".npz"),
         ("segment", ".png")]


@pytest.mark.parametrize("kind,ext", SAVES)
def test_every_result_refuses_an_existing_file_unless_overwrite(tmp_path, kind, ext):
    import inspect

    result = _results()[kind]
    assert inspect.signature(result.save).parameters["overwrite"].default is False
    path = tmp_path / f"mine{ext}"
    path.write_bytes(b"the user's own file")
    with pytest.raises(OutputExistsError) as e:
        result.save(path)
    assert str(e.value) == f"cannot write '{path}': file exists; pass overwrite=True to replace it"
    assert path.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    result.save(path, overwrite=True)
    assert path.read_bytes() != b"the user's own file"
    result.save(tmp_path / "new" / f"fresh{ext}")  # a new file (and folder) needs no flag


def test_flow_result_files_read_back(tmp_path):
    from cwm.flowio import read_flo

    result = _results()["flow"]
    for ext in (".npy", ".npz", ".flo"):
        result.save(tmp_path / f"f{ext}")
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), result.flow)
    with np.load(tmp_path / "f.npz") as z:
        assert sorted(z.files) == ["confidence", "flow", "occlusion"]
        np.testing.assert_array_equal(z["occlusion"], result.occlusion)
    np.testing.assert_array_equal(read_flo(tmp_path / "f.flo"), result.flow)


@pytest.mark.parametrize("writer", ["write_flo", "write_kitti_flow"])
def test_flow_file_writers_refuse_an_existing_file_unless_overwrite(tmp_path, writer):
    import cwm.flowio

    write = getattr(cwm.flowio, writer)
    path = tmp_path / ("f.flo" if writer == "write_flo" else "f.png")
    path.write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="pass overwrite=True"):
        write(path, np.zeros((2, 3, 2), np.float32))
    assert path.read_bytes() == b"mine"
    write(path, np.zeros((2, 3, 2), np.float32), overwrite=True)
    assert path.read_bytes() != b"mine"


# ------------------------------------------------------------------ --size never enlarges
@pytest.mark.parametrize("command", ["flow", "predict", "depth"])
def test_a_size_larger_than_the_input_is_refused_before_anything(capsys, data, tmp_path, monkeypatch, command):
    monkeypatch.setattr("cwm.load", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "o"
    code, _, err = run(capsys, command, data["video"], "--size", "8000", "-o", out)
    assert code == 2
    assert one_error_line(err) == ("cwm: error: --size 8000 is larger than the 48x40 input; --size only shrinks "
                                   "frames (use --size 48 or less, or leave it out)")
    assert not out.exists()
    code, _, err = run(capsys, command, data["f0"], data["f1"], "--size", "49", "-o", out)
    assert code == 2 and "--size 49 is larger than the 48x40 input" in one_error_line(err)
    assert not out.exists()


def test_a_size_equal_to_the_input_keeps_it(capsys, data, tmp_path, monkeypatch):
    from test_cli import _FakeFlow

    monkeypatch.setattr("probes.flow.flow", lambda predictor, f0, f1, **kw: _FakeFlow(*f0.shape[:2]))
    code, _, err = run(capsys, "flow", data["f0"], data["f1"], "--size", "48", "--format", "npy",
                       "--weights", data["weights"], "-o", tmp_path)
    assert code == 0, err
    assert np.load(tmp_path / "flow.npy").shape == (H, W, 2)


# ------------------------------------------------------------------ the aspect-ratio note
NOTE = "cwm: note: 48x40 input is resized to the model's 32x32 (aspect 1.20 -> 1.00); {} is returned at 48x40"


def _notes(err: str) -> list[str]:
    return [line.rsplit("\r", 1)[-1] for line in err.splitlines() if "note:" in line]


def test_a_squashed_aspect_ratio_is_noted_once(capsys, data, tmp_path):
    """predict resizes to the model's grid and says so; --quiet silences it."""
    code, _, err = run(capsys, "predict", data["f0"], data["f1"], "--weights", data["weights"], "-o", tmp_path)
    assert code == 0, err
    assert _notes(err) == [NOTE.format("the prediction")]
    code, _, err = run(capsys, "predict", data["f0"], data["f1"], "--weights", data["weights"], "-q",
                       "-o", tmp_path / "quiet")
    assert code == 0 and _notes(err) == []  # --quiet: only the paths written


@pytest.mark.parametrize("command", ["flow", "occlusion", "depth"])
def test_flow_keeps_the_aspect_ratio_so_no_note(capsys, data, tmp_path, command):
    """The flow probes read a 48x40 input at its own aspect ratio (probes.pyramid): no note."""
    code, _, err = run(capsys, command, data["f0"], data["f1"], "--weights", data["weights"], "-o", tmp_path)
    assert code == 0, err
    assert _notes(err) == []


def test_note_aspect_tolerance():
    import argparse

    from cwm.cli.common import note_aspect

    class Model:
        size = (64, 64)

    quiet = argparse.Namespace(quiet=True)
    assert note_aspect(quiet, Model(), (200, 201), "flow") is None  # 0.5%: within the tolerance (1%)
    assert note_aspect(quiet, Model(), (100, 102), "flow").startswith("cwm: note: 102x100 input")
    assert note_aspect(quiet, Model(), (576, 768, 3), "flow") == (
        "cwm: note: 768x576 input is resized to the model's 64x64 (aspect 1.33 -> 1.00); flow is returned at 768x576")


# ------------------------------------------------------------------ cwm depth --max-flow
def test_depth_max_flow_reaches_the_flow_probe(capsys, data, tmp_path, monkeypatch):
    import probes.flow

    seen = []
    real = probes.flow.flow

    def spy(predictor, f0, f1, **options):
        seen.append(options)
        return real(predictor, f0, f1, **options)

    monkeypatch.setattr(probes.flow, "flow", spy)
    code, _, err = run(capsys, "depth", data["f0"], data["f1"], "--stereo", "--max-flow", "7.5",
                       "--weights", data["weights"], "-o", tmp_path)
    assert code == 0, err
    assert seen == [{"max_flow": 7.5}]
    code, _, err = run(capsys, "depth", data["f0"], data["f1"], "--weights", data["weights"], "-o", tmp_path / "d")
    assert code == 0 and seen[-1] == {}
    code, _, err = run(capsys, "depth", data["f0"], data["f1"], "--max-flow", "0", "-o", tmp_path / "x")
    assert code == 2 and "--max-flow: expected a positive number, got '0'" in one_error_line(err)


def test_depth_and_flow_document_max_flow_alike(capsys):
    helps = {}
    for command in ("flow", "depth"):
        code, out, _ = run(capsys, command, "--help")
        helps[command] = " ".join(out.split()).split("--max-flow PX ", 1)[1].split("run faster", 1)[0]
    assert helps["depth"] == helps["flow"] and helps["flow"].startswith("largest motion searched, in input pixels")


# ------------------------------------------------------------------ raw arrays: one .npz per video
def test_flow_npz_round_trip_matches_per_pair_npy(capsys, data, tmp_path):
    from cwm.npz import load_stacked

    args = ["flow", data["video"], "--every", "2", "--format", "raw", "--weights", data["weights"], "-q"]
    code, out, err = run(capsys, *args, "-o", tmp_path / "z")
    assert code == 0, err
    assert files(tmp_path / "z") == ["flow.npz"] and out.strip() == str(tmp_path / "z" / "flow.npz")
    starts = list(range(0, FRAMES - 1, 2))
    with np.load(tmp_path / "z" / "flow.npz") as z:  # np.load reads it; members as documented
        per_pair = [f"{a}_{t:06d}" for t in starts for a in ("flow", "occlusion", "confidence")]
        assert z.files == per_pair + ["frame_index"]
        assert z["frame_index"].dtype == np.int64 and z["frame_index"].tolist() == [[t, t + 1] for t in starts]
    stacked = load_stacked(tmp_path / "z" / "flow.npz")
    assert sorted(stacked) == ["confidence", "flow", "frame_index", "occlusion"]
    n = len(starts)
    assert stacked["flow"].shape == (n, H, W, 2) and stacked["flow"].dtype == np.float32
    assert stacked["occlusion"].shape == (n, H, W) and stacked["occlusion"].dtype == bool
    assert stacked["confidence"].shape == (n, H, W) and stacked["confidence"].dtype == np.float32
    code, _, err = run(capsys, *args, "--raw", "npy", "-o", tmp_path / "y")
    assert code == 0, err
    assert files(tmp_path / "y") == [f"raw/{t:06d}.npy" for t in starts]
    for i, t in enumerate(starts):
        np.testing.assert_array_equal(stacked["flow"][i], np.load(tmp_path / "y" / f"raw/{t:06d}.npy"))


def test_float16_halves_the_raw_arrays(capsys, data, tmp_path):
    from cwm.npz import load_stacked

    args = ["flow", data["video"], "--every", "2", "--format", "raw", "--weights", data["weights"], "-q"]
    assert run(capsys, *args, "-o", tmp_path / "a")[0] == 0
    assert run(capsys, *args, "--float16", "-o", tmp_path / "b")[0] == 0
    full, half = load_stacked(tmp_path / "a" / "flow.npz"), load_stacked(tmp_path / "b" / "flow.npz")
    assert half["flow"].dtype == np.float16 and half["confidence"].dtype == np.float16
    assert half["occlusion"].dtype == bool
    np.testing.assert_array_equal(half["flow"], full["flow"].astype(np.float16))
    assert run(capsys, *args, "--float16", "--raw", "npy", "-o", tmp_path / "c")[0] == 0
    assert np.load(tmp_path / "c" / "raw/000000.npy").dtype == np.float16


def test_two_images_with_raw_npz(capsys, data, tmp_path):
    code, _, err = run(capsys, "flow", data["f0"], data["f1"], "--raw", "npz", "--weights", data["weights"],
                       "-o", tmp_path)
    assert code == 0, err
    assert files(tmp_path) == ["flow.npz", "flow.png"]
    with np.load(tmp_path / "flow.npz") as z:
        assert z.files == ["flow_000000", "occlusion_000000", "confidence_000000", "frame_index"]
        assert z["frame_index"].tolist() == [[0, 1]] and z["flow_000000"].shape == (H, W, 2)


@pytest.mark.parametrize("flags,words", [
    (["--format", "flo", "--raw", "npz"], "--format flo writes Middlebury .flo files (float32); --raw applies"),
    (["--format", "flo", "--float16"], "--float16 applies to npz/npy raw arrays"),
    (["--format", "npy", "--raw", "npz"], "for raw arrays only, in one .npz, use --format raw"),
])
def test_raw_usage_errors(capsys, data, tmp_path, flags, words):
    code, _, err = run(capsys, "flow", data["video"], *flags, "-o", tmp_path)
    assert code == 2 and words in one_error_line(err)
    assert files(tmp_path) == []


def test_npz_writer_streams_with_flat_memory(tmp_path):
    """Thirty 2 MiB arrays (60 MiB) go in while only a few are in memory; np.savez_compressed
    would hold them all."""
    import tracemalloc

    from cwm.npz import npz_writer

    tracemalloc.start()
    try:
        with npz_writer(tmp_path / "a.npz") as add:
            for i in range(30):
                add(f"x_{i:06d}", np.full(2 ** 18, float(i)))  # float64: 2 MiB
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 2 ** 20, peak / 2 ** 20
    with np.load(tmp_path / "a.npz") as z:
        assert len(z.files) == 30 and z["x_000029"].shape == (2 ** 18,)
        np.testing.assert_array_equal(z["x_000007"], np.full(2 ** 18, 7.0))
    assert (tmp_path / "a.npz").stat().st_size < 2 ** 20  # compressed


def test_npz_writer_is_atomic_and_refuses_bad_names(tmp_path):
    from cwm.errors import ConfigError
    from cwm.npz import load_stacked, npz_writer

    with pytest.raises(KeyboardInterrupt):
        with npz_writer(tmp_path / "a.npz") as add:
            add("flow_000000", np.zeros(3))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary
    for bad in ("", "a/b", "x x"):
        with pytest.raises(ConfigError, match="not allowed"), npz_writer(tmp_path / "b.npz") as add:
            add(bad, np.zeros(1))
    with pytest.raises(ConfigError, match="repeated"), npz_writer(tmp_path / "b.npz") as add:
        add("a", np.zeros(1))
        add("a", np.zeros(1))
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "old.npz").write_bytes(b"mine")
    with pytest.raises(OutputExistsError, match="pass overwrite=True"), npz_writer(tmp_path / "old.npz"):
        pass
    assert (tmp_path / "old.npz").read_bytes() == b"mine"
    with npz_writer(tmp_path / "c.npz") as add:
        add("flow_000003", np.ones((2, 2)))
        add("frame_index", np.array([[3, 4], [5, 6]]))
    with pytest.raises(InputError, match="pair 5 has no flow member"):
        load_stacked(tmp_path / "c.npz")
    with pytest.raises(InputError, match="cannot read"):
        load_stacked(tmp_path / "old.npz")


def test_pretrain_refusal_names_the_argument_and_the_flag(tmp_path):
    from pretrain.checkpointing import CHECKPOINTS, META_FILE
    from pretrain.config import ConfigError, resolve
    from pretrain.train import train

    run = tmp_path / "run"
    (run / CHECKPOINTS / "step_00000002").mkdir(parents=True)
    (run / CHECKPOINTS / "step_00000002" / META_FILE).write_text("{}")
    with pytest.raises(ConfigError) as e:
        train(resolve(overrides=[f"train.output_dir={run}", "data.source=synthetic"]))
    assert str(e.value) == (f"'{run}' already holds checkpoints; pass resume=True (--resume on the command line) "
                            "to continue that run, or choose another train.output_dir")


# ------------------------------------------------------------------ the CLI and demos use the predictor
def _imported(path) -> set[str]:
    """Every module ``path`` imports (module level and inside functions; read with ast)."""
    import ast

    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _under(names: set[str], package: str) -> list[str]:
    return sorted(n for n in names if n == package or n.startswith(f"{package}."))


def test_the_cli_and_the_demos_reach_the_probes_only_through_the_predictor():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cli = list((root / "cwm" / "cli").glob("*.py"))  # cwm eval included: one harness through the predictor
    demos = list((root / "demos").glob("*.py"))
    assert len(cli) > 10 and len(demos) > 5
    bad = {p.relative_to(root).as_posix(): _under(_imported(p), "probes") for p in cli + demos}
    assert {k: v for k, v in bad.items() if v} == {}
    drawn = {p.relative_to(root).as_posix(): _under(_imported(p), "cwm.cli") for p in demos}
    assert {k: v for k, v in drawn.items() if v} == {}


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from probes.flow import flow\n    from cwm import cli\n")
    assert _under(_imported(f), "probes") == ["probes.flow", "probes.flow.flow"]
    assert _under(_imported(f), "cwm.cli") == ["cwm.cli"]
