"""cwm.atomic: outputs survive a power cut (the data is fsynced before the rename, the folder after)."""
from __future__ import annotations

import os

import pytest

import cwm.atomic
from cwm.atomic import atomic_write


@pytest.fixture
def events(monkeypatch):
    """Record, in order, every fsync (as the inode it flushed) and every rename/link."""
    log: list[tuple] = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link

    def fsync(fd):
        st = os.fstat(fd)
        log.append(("fsync", (st.st_dev, st.st_ino)))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        log.append(("rename", str(dst)))
        return real_replace(src, dst, *a, **k)

    def link(src, dst, *a, **k):
        log.append(("rename", str(dst)))
        return real_link(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "link", link)
    return log


def _inode(path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


@pytest.mark.skipif(os.name == "nt", reason="folders are not fsynced on Windows")
@pytest.mark.parametrize("overwrite", [False, True])
def test_file_is_fsynced_before_the_rename_and_its_folder_after(tmp_path, events, overwrite):
    target = tmp_path / "sub" / "out.bin"
    if overwrite:
        target.parent.mkdir()
        target.write_bytes(b"old")
    with atomic_write(target, overwrite=overwrite) as tmp:
        tmp.write_bytes(b"new data")
    assert target.read_bytes() == b"new data"
    file_sync = ("fsync", _inode(target))        # the rename keeps the inode
    folder_sync = ("fsync", _inode(target.parent))
    rename = ("rename", str(target))
    assert file_sync in events and rename in events and folder_sync in events, events
    assert events.index(file_sync) < events.index(rename) < events.index(folder_sync), events


def test_nothing_is_renamed_or_synced_when_the_writer_fails(tmp_path, events):
    with pytest.raises(RuntimeError):
        with atomic_write(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer failed")
    assert not any(kind == "rename" for kind, _ in events)
    assert list(tmp_path.iterdir()) == []


def test_training_checkpoints_use_the_same_helpers():
    import pretrain.checkpointing as ckpt

    assert ckpt.fsync_dir is cwm.atomic.fsync_dir and ckpt.fsync_file is cwm.atomic.fsync_file
