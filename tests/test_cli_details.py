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
