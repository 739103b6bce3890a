"""Memory-mapped tables of UTF-8 strings (`<name>.bin` + `<name>.offsets.npy`): external ids, the document store."""
from __future__ import annotations

import mmap
import shutil
from array import array
from pathlib import Path

import numpy as np

from engine.arrays import load_array
from engine.errors import IndexFormatError


class StringTable:
    """Read-only; `get_many` returns the strings of many rows at once (what a search result needs)."""

    def __init__(self, directory: Path, name: str, count: int) -> None:
        self.blob_path = directory / f"{name}.bin"
        self.offsets_path = directory / f"{name}.offsets.npy"
        offsets = load_array(self.offsets_path, np.int64, count + 1)
        if not self.blob_path.exists():
            raise IndexFormatError(f"{self.blob_path}: missing")
        blob_size = self.blob_path.stat().st_size
        if offsets[0] != 0 or int(offsets[-1]) != blob_size:
            raise IndexFormatError(f"{self.offsets_path}: offsets end at {int(offsets[-1])} but "
                                   f"{self.blob_path.name} has {blob_size} bytes")
        self.offsets = offsets
        # mmap slicing returns bytes directly (a numpy memmap slice costs microseconds per string).
        # An empty file cannot be mapped; an empty table has nothing to read anyway.
        if blob_size:
            with open(self.blob_path, "rb") as handle:
                self.blob: mmap.mmap | bytes = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        else:
            self.blob = b""

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, number: int) -> str:
        if not 0 <= number < len(self):
            raise IndexError(f"row {number} out of range [0, {len(self)})")
        start, end = int(self.offsets[number]), int(self.offsets[number + 1])
        return self.blob[start:end].decode("utf-8")

    def get_many(self, numbers: np.ndarray) -> list[str]:
        numbers = np.asarray(numbers, dtype=np.int64)
        if len(numbers) and (numbers.min() < 0 or numbers.max() >= len(self)):
            raise IndexError(f"rows out of range [0, {len(self)})")
        blob = self.blob
        starts, ends = self.offsets[numbers].tolist(), self.offsets[numbers + 1].tolist()
        return [blob[start:end].decode("utf-8") for start, end in zip(starts, ends)]

    def close(self) -> None:
        if isinstance(self.blob, mmap.mmap):
            self.blob.close()


class StringTableWriter:
    """Appends strings to `<name>.bin`; `close()` writes `<name>.offsets.npy`.

    Memory stays constant whatever the number of strings: the byte offsets go to a scratch file in blocks of
    `OFFSETS_BLOCK` and are copied behind the `.npy` header on close (the same bytes `numpy.save` writes).
    """

    OFFSETS_BLOCK = 1 << 16

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = Path(directory)
        self.name = name
        self._blob = open(self.directory / f"{name}.bin", "wb")
        self._scratch_path = self.directory / f".{name}.offsets.partial"
        self._scratch = open(self._scratch_path, "wb")
        self._block = array("q", [0])
        self._end = 0
        self._count = 0

    def append(self, text: str) -> None:
        data = text.encode("utf-8")
        self._blob.write(data)
        self._end += len(data)
        self._block.append(self._end)
        self._count += 1
        if len(self._block) >= self.OFFSETS_BLOCK:
            self._block.tofile(self._scratch)
            self._block = array("q")

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._blob.close()
        self._block.tofile(self._scratch)
        self._scratch.close()
        path = self.directory / f"{self.name}.offsets.npy"
        # open_memmap writes the header numpy.save would write for int64[count + 1]; the data follows it.
        header = np.lib.format.open_memmap(path, mode="w+", dtype=np.int64, shape=(self._count + 1,))
        data_offset = header.offset
        del header
        with open(path, "r+b") as out, open(self._scratch_path, "rb") as scratch:
            out.seek(data_offset)
            shutil.copyfileobj(scratch, out, 1 << 20)
        self._scratch_path.unlink()
