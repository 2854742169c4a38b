"""Property-based fuzzing of the parsers that read user files: Middlebury .flo, KITTI flow PNG
and config.json (the point and move argument parsers are fuzzed in test_cli.py).

Whatever the bytes, only the exceptions each reader documents may escape (InputError for the
flow readers; ConfigError, or WeightsError for a missing file, for config.json), and whatever
parses must satisfy the reader's contract.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cwm.checkpoints import read_config
from cwm.config import CWMConfig, VARIANTS
from cwm.errors import ConfigError, InputError, WeightsError
from cwm.flowio import read_flo, read_kitti_flow, write_flo, write_kitti_flow

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None, tail: bytes) -> bytes:
    """``data`` with bytes overwritten (``(position, value)``), cut at ``cut``, ``tail`` appended."""
    b = bytearray(data)
    for pos, value in edits:
        if b:
            b[pos % len(b)] = value
    if cut is not None:
        b = b[: cut % (len(b) + 1)]
    return bytes(b) + tail


EDITS = st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), max_size=6)
CUT = st.none() | st.integers(0, 10 ** 6)
TAIL = st.binary(max_size=16)


# ------------------------------------------------------------------------------------ .flo
def _read_flo_contract(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        flow = read_flo(path)
    except InputError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    h, w = flow.shape[:2]
    assert flow.dtype == np.float32 and flow.shape == (h, w, 2) and len(data) == 12 + 8 * h * w


@FUZZ
@given(data=st.binary(max_size=200))
@example(data=b"PIEH" + struct.pack("<ii", 0, 0))
@example(data=b"PIEH" + struct.pack("<ii", -1, -8) + bytes(64))
@example(data=b"PIEH" + struct.pack("<ii", 2 ** 31 - 1, 2 ** 31 - 1))
def test_flo_reader_on_arbitrary_bytes(folder, data):
    _read_flo_contract(folder / "any.flo", data)


@FUZZ
@given(edits=EDITS, cut=CUT, tail=TAIL, size=st.tuples(st.integers(1, 5), st.integers(1, 5)),
       header=st.none() | st.tuples(st.integers(-2 ** 31, 2 ** 31 - 1), st.integers(-2 ** 31, 2 ** 31 - 1)))
def test_flo_reader_on_mutated_files(folder, edits, cut, tail, size, header):
    path = folder / "valid.flo"
    write_flo(path, np.arange(size[0] * size[1] * 2, dtype=np.float32).reshape(*size, 2), overwrite=True)
    data = path.read_bytes()
    if header is not None:  # any width and height, the case the size check exists for
        data = data[:4] + struct.pack("<ii", *header) + data[12:]
    _read_flo_contract(folder / "mutated.flo", _mutate(data, edits, cut, tail))


# ------------------------------------------------------------------------------------ KITTI
def _read_kitti_contract(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        flow, valid = read_kitti_flow(path)
    except InputError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert flow.dtype == np.float32 and flow.ndim == 3 and flow.shape[2] == 2
    assert valid.dtype == bool and valid.shape == flow.shape[:2]
    assert np.isfinite(flow).all() and (flow[~valid] == 0).all() and np.abs(flow).max(initial=0) <= 512


def _with_ihdr(png: bytes, width: int, height: int, depth: int, colour: int) -> bytes:
    """``png`` with its IHDR fields replaced and the chunk's CRC fixed (so libpng gets past it)."""
    fields = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunk = b"IHDR" + fields
    return png[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


@FUZZ
@given(data=st.binary(max_size=300))
@example(data=b"\x89PNG\r\n\x1a\n")
def test_kitti_reader_on_arbitrary_bytes(folder, data):
    _read_kitti_contract(folder / "any.png", data)


@FUZZ
@given(edits=EDITS, cut=CUT, tail=TAIL,
       ihdr=st.none() | st.tuples(st.integers(1, 2000), st.integers(1, 2000), st.sampled_from([1, 2, 4, 8, 16]),
                                  st.sampled_from([0, 2, 3, 4, 6])))
def test_kitti_reader_on_mutated_pngs(folder, edits, cut, tail, ihdr):
    path = folder / "valid.png"
    rng = np.random.default_rng(0)
    write_kitti_flow(path, rng.integers(-64 * 50, 64 * 50, (6, 7, 2)) / 64.0, rng.random((6, 7)) > 0.2,
                     overwrite=True)
    data = path.read_bytes()
    if ihdr is not None:
        data = _with_ihdr(data, *ihdr)
    _read_kitti_contract(folder / "mutated.png", _mutate(data, edits, cut, tail))


# ------------------------------------------------------------------------------------ config.json
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
                    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
FIELDS = [f for f in CWMConfig.__dataclass_fields__]
#: A field's value: anything JSON holds, or a plausible one, so that some configs do parse.
VALUE = JSON | st.integers(1, 64) | st.lists(st.integers(1, 64), min_size=2, max_size=2) \
    | st.lists(st.floats(0.1, 1), min_size=3, max_size=3) | st.floats(0, 0.99)
ARCH = st.builds(lambda base, changes: {**base, **changes},
                 st.sampled_from([v.to_dict() for v in VARIANTS.values()]),
                 st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=10), VALUE, max_size=4))


def _config_contract(cfg: CWMConfig) -> None:
    """A config that parsed has the documented types and survives a JSON round trip."""
    ints = ("patch_size", "num_frames", "enc_dim", "enc_depth", "enc_heads", "dec_dim", "dec_depth", "dec_heads")
    assert all(type(getattr(cfg, f)) is int and getattr(cfg, f) >= 1 for f in ints)
    assert cfg.img_size is None or (len(cfg.img_size) == 2 and all(type(s) is int and s >= 1 for s in cfg.img_size))
    assert type(cfg.k_bias) is bool and all(type(v) is float for v in (*cfg.mean, *cfg.std, cfg.mlp_ratio))
    assert CWMConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@FUZZ
@given(arch=ARCH | JSON)
def test_config_from_dict_raises_only_config_errors(arch):
    try:
        cfg = CWMConfig.from_dict(arch)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    _config_contract(cfg)


@FUZZ
@given(meta=st.fixed_dictionaries({"format_version": st.integers(0, 2) | JSON, "architecture": ARCH | JSON},
                                  optional={"training": JSON, "preprocessing": JSON, "extra": JSON}) | JSON)
def test_config_json_reader_raises_only_config_errors(folder, meta):
    path = folder / "config.json"
    path.write_text(json.dumps(meta))
    try:
        cfg, training = read_config(path)
    except ConfigError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    _config_contract(cfg)
    assert isinstance(training, dict)


@FUZZ
@given(data=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
@example(data=b"[" * 100_000)  # nesting deeper than the recursion limit
@example(data=b'{"format_version": ' + b"1" * 5000 + b"}")  # an integer past int() digit limit
@example(data=b'{"format_version": 1, "architecture": {"enc_dim": 1e999}}')
@example(data=b"\xff\xfe{}")
def test_config_json_reader_on_arbitrary_bytes(folder, data):
    path = folder / "config.json"
    path.write_bytes(data)
    try:
        cfg, _ = read_config(path)
    except ConfigError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    _config_contract(cfg)


def test_config_json_reader_errors_for_missing_and_folder(folder):
    with pytest.raises(WeightsError, match="not found"):
        read_config(folder / "nowhere" / "config.json")
    (folder / "dir.json").mkdir(exist_ok=True)
    with pytest.raises(ConfigError, match="dir.json"):
        read_config(folder / "dir.json")
