"""Decoding overlapped with compute: a reader thread that runs a few items ahead of the model.

Frame decoding (FFmpeg, PNG) releases the GIL, and so does torch's compute, so a thread that
decodes the next pairs while the model works on the current ones hides most of the decoding time,
on a GPU and on a CPU alike (``benchmarks/readahead.py`` measures it: 1.06x on this 2-core CPU,
where decoding is about 1% of a pair).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def readahead(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` in a reader thread, up to ``depth`` items ahead (decoding overlaps compute).

    Items come out in order; an exception raised by ``items`` is raised here, after the items
    before it. Closing the iterator early (``break``) stops the reader.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    end, stop = object(), threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as e:  # noqa: BLE001  (handed to the consumer)
            put((end, e))

    thread = threading.Thread(target=read, name="cwm-decode", daemon=True)
    thread.start()
    try:
        while True:
            item, error = q.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
