"""`.npy` arrays of the index: memory-mapped reads with shape/dtype checks, and zero-copy writable outputs."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import IndexFormatError


def create_array(directory: Path, name: str, dtype: Any, length: int) -> np.memmap:
    """A writable, memory-mapped `.npy` array of the given length (zero-filled), for building without RAM."""
    return np.lib.format.open_memmap(Path(directory) / name, mode="w+", dtype=dtype, shape=(int(length),))


def open_for_append(directory: Path, name: str, dtype: Any, length: int):
    """An output .npy of dtype[length] (header as numpy.save writes it), opened for sequential writes of its data:
    plain writes, nothing memory-mapped for writing, so the output never counts in the writer's resident memory."""
    header = create_array(directory, name, dtype, length)
    data_offset = header.offset
    del header
    handle = open(Path(directory) / name, "r+b")
    handle.seek(data_offset)
    return handle


def load_array(path: Path, dtype: Any, length: int) -> np.ndarray:
    """Map `path` read-only; IndexFormatError naming the file unless it is dtype[length]."""
    if not path.exists():
        raise IndexFormatError(f"{path}: missing")
    try:
        if length == 0:
            arr = np.load(path, allow_pickle=False)  # numpy cannot memory-map a zero-length array
        else:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise IndexFormatError(f"{path}: unreadable or truncated array ({exc})") from exc
    if arr.dtype != np.dtype(dtype) or arr.ndim != 1 or arr.shape[0] != length:
        raise IndexFormatError(
            f"{path}: expected {np.dtype(dtype).name}[{length}], found {arr.dtype.name}{list(arr.shape)}")
    return arr
