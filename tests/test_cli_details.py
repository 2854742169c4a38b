"""CLI and API details a new user hit (issue 13, item 7): ``--size`` that would enlarge, the
aspect-ratio note, ``cwm depth --max-flow``, errors that name the Python argument in the API and
the flag on the command line, one ``save(path, overwrite=False)`` contract for every result, and
raw flow in one streamed ``.npz`` per video.

Uses the tiny random model and inputs of ``tests/test_cli.py`` (its ``data`` fixture).
"""
from __future__ import annotations

import numpy as np
import pytest

from cwm.cli.main import main
from cwm.errors import OutputExistsError
from test_cli import FRAMES, H, W, data, files, needs, one_error_line, run  # noqa: F401  (data: a fixture)


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
