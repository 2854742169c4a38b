"""A compressed ``.npz`` written one array at a time, so memory stays flat however many go in.

``np.savez_compressed`` needs every array in memory at once: 795 flow fields of 768x576 would be
1.4 GB even as float16. :func:`npz_writer` appends each array as its own deflate-compressed
member ``<name>.npy`` the moment it is computed, into a temporary file that is renamed onto the
target only when the ``with`` block completes (:func:`cwm.atomic.atomic_write`): an interrupted
run leaves no partial ``.npz``. ``np.load`` reads the result like any ``.npz``; members are read
lazily, one at a time.

Per-pair files (``cwm flow video.mp4``) name their members ``<array>_<t>`` with ``t`` the pair's
first frame as six digits (``flow_000000``, ``occlusion_000000``, ...) and add ``frame_index``,
int64 ``[N, 2]`` rows ``(t, t + gap)`` in the order written; :func:`load_stacked` stacks them.

    with npz_writer("flow.npz") as add:
        add("flow_000000", flow0)
        add("frame_index", np.array([[0, 1]]))
    arrays = np.load("flow.npz")            # arrays["flow_000000"]: [H, W, 2]
    stacked = load_stacked("flow.npz")      # stacked["flow"]: [N, H, W, 2]
"""
from __future__ import annotations

import contextlib
import os
import re
import zipfile
from collections.abc import Callable, Iterator

import numpy as np

from cwm.errors import ConfigError, InputError

_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_PAIR_MEMBER = re.compile(r"(.+)_(\d{6,})")


@contextlib.contextmanager
def npz_writer(path: str | os.PathLike, overwrite: bool = False,
               compresslevel: int | None = None) -> Iterator[Callable[[str, np.ndarray], None]]:
    """Yield ``add(name, array)``, which appends ``array`` as member ``name.npy`` of ``path``.

    Each array is compressed and written as it is added; only the one being added is in memory.
    The file appears at ``path`` when the ``with`` block ends without an error.

    Args:
        path: the ``.npz`` to write.
        overwrite: replace an existing file; otherwise an existing ``path`` raises InputError.
        compresslevel: zlib level 0-9 (None: zlib's default, as ``np.savez_compressed``).
    Raises:
        InputError: ``path`` exists (without ``overwrite``) or cannot be written.
        ConfigError: a name that is empty, repeated, or holds characters other than letters,
            digits, ``_``, ``.`` and ``-``; an object array (not storable without pickle).
    """
    from cwm.atomic import atomic_write

    with atomic_write(path, overwrite=overwrite) as tmp, \
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=compresslevel) as zf:
        names: set[str] = set()

        def add(name: str, array: np.ndarray) -> None:
            if not _NAME.fullmatch(name) or name in names:
                raise ConfigError(f"npz member name {name!r} is {'repeated' if name in names else 'not allowed'}"
                                  " (letters, digits, _ . - and each name once)")
            array = np.asanyarray(array)
            if array.dtype.hasobject:
                raise ConfigError(f"npz member {name!r}: object arrays cannot be stored without pickle")
            names.add(name)
            with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)

        yield add


def load_stacked(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a per-pair ``.npz`` (see the module notes) with each array stacked over the pairs.

    Returns:
        ``{"frame_index": [N, 2] int64, "<array>": [N, ...] for each per-pair array}`` (e.g.
        ``flow`` ``[N, H, W, 2]``, ``occlusion`` ``[N, H, W]`` bool), rows in ``frame_index``
        order; members that are not per-pair come back as stored. Everything is loaded into
        memory: for long videos read members one at a time with ``np.load(path)[name]``.
    Raises:
        InputError: not a readable ``.npz``, no ``frame_index``, or a pair missing an array.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            members = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"cannot read '{path}' as .npz: {e}") from None
    if "frame_index" not in members:
        raise InputError(f"'{path}' has no frame_index member, so it is not a per-pair .npz")
    index = members.pop("frame_index").astype(np.int64).reshape(-1, 2)
    out: dict[str, np.ndarray] = {"frame_index": index}
    groups: dict[str, dict[int, np.ndarray]] = {}
    for name, array in members.items():
        m = _PAIR_MEMBER.fullmatch(name)
        if m:
            groups.setdefault(m.group(1), {})[int(m.group(2))] = array
        else:
            out[name] = array
    for key, by_t in groups.items():
        missing = [int(t) for t in index[:, 0] if int(t) not in by_t]
        if missing:
            raise InputError(f"'{path}': pair {missing[0]} has no {key} member")
        out[key] = np.stack([by_t[int(t)] for t in index[:, 0]])
    return out
