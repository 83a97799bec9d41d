"""Ingest's output shards: serialized tf.Examples as gzip TFRecord files, one per input file and split.

A TFRecord is `uint64 length | masked crc32c of the length | data | masked crc32c of the data` (little endian);
the frames of a batch of records are built with numpy and Arrow, compressed (zlib, gzip wrapper, its default
level, as Beam's and TensorFlow's writers) on a writer thread while the next batch is parsed. A shard is written
under a temporary name and renamed into place when complete, so a retried or failed file leaves no half shard.
"""

from __future__ import annotations

import concurrent.futures
import os
import zlib
from typing import Optional

import google_crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tfx.dsl.io import fileio

_MASK_DELTA = 0xA282EAD8


def _crc32c_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc32c_table()


def _masked(crc: np.ndarray) -> np.ndarray:
    crc = crc.astype(np.uint64)
    return ((((crc >> np.uint64(15)) | (crc << np.uint64(17))) + np.uint64(_MASK_DELTA)) & np.uint64(0xFFFFFFFF)
            ).astype("<u4")


def _crc32c_rows(matrix: np.ndarray) -> np.ndarray:
    """crc32c of each row of a byte matrix (the same as google_crc32c.value of each row's bytes)."""
    crc = np.full(matrix.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for column in range(matrix.shape[1]):
        crc = _TABLE[(crc ^ matrix[:, column]) & np.uint32(0xFF)] ^ (crc >> np.uint32(8))
    return crc ^ np.uint32(0xFFFFFFFF)


def _fixed(matrix: np.ndarray) -> pa.Array:
    n, width = matrix.shape
    offsets = np.arange(n + 1, dtype=np.int64) * width
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets),
                                                                   pa.py_buffer(np.ascontiguousarray(matrix))])


def frames(records: pa.Array) -> memoryview:
    """The TFRecord frames of `records` (a binary array without nulls), back to back."""
    records = records.cast(pa.large_binary())
    n = len(records)
    offsets = np.frombuffer(records.buffers()[1], dtype=np.int64)[records.offset:records.offset + n + 1]
    lengths = np.diff(offsets).astype("<u8").view(np.uint8).reshape(n, 8)
    head = np.hstack([lengths, _masked(_crc32c_rows(lengths)).view(np.uint8).reshape(n, 4)])
    data = records.buffers()[2].to_pybytes()
    bounds = offsets.tolist()
    crc = np.fromiter((google_crc32c.value(data[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)),
                      dtype=np.uint32, count=n)
    tail = _masked(crc).view(np.uint8).reshape(n, 4)
    framed = pc.binary_join_element_wise(_fixed(head), records, _fixed(tail), pa.scalar(b"", pa.large_binary()))
    start, end = np.frombuffer(framed.buffers()[1], dtype=np.int64)[[0, n]]
    return memoryview(framed.buffers()[2])[start:end]


class ShardWriter:
    """One gzip TFRecord file, written at `temporary` and moved to `path` by close()."""

    def __init__(self, path: str, temporary: str):
        self._path, self._temporary = path, temporary
        fileio.makedirs(os.path.dirname(temporary))
        self._file = fileio.open(temporary, "wb")
        self._zip = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._pending: Optional[concurrent.futures.Future] = None
        self.records = 0

    def _compress(self, data: memoryview) -> None:
        self._file.write(self._zip.compress(data))

    def write(self, records: pa.Array) -> None:
        """Appends `records` (serialized tf.Examples); compresses them while the caller goes on."""
        if not len(records):
            return
        data = frames(records)
        self._wait()
        self._pending = self._thread.submit(self._compress, data)
        self.records += len(records)

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self) -> None:
        self._wait()
        self._thread.shutdown()
        self._file.write(self._zip.flush())
        self._file.close()
        fileio.makedirs(os.path.dirname(self._path))
        fileio.rename(self._temporary, self._path, overwrite=True)

    def abort(self) -> None:
        self._thread.shutdown(wait=True)
        self._file.close()
        if fileio.exists(self._temporary):
            fileio.remove(self._temporary)
