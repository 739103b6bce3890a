"""Writing pre-encoded vectors JSONL (`{"id", "title", "text", "vector": {token: weight}}`) and its sidecar.

The sidecar `<file>.manifest.json` records what produced the vectors (model summary and vocabulary fingerprint,
document max length, max terms), so an index built later from the file records the same facts. Weights are
written as the shortest decimal that reads back to the same float32, so a rebuild from the file is exact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from index_builder.corpus import CorpusDocument, CorpusError


def sidecar_path(vectors_path: str | os.PathLike) -> Path:
    path = Path(vectors_path)
    return path.with_name(path.name + ".manifest.json")


def read_sidecar(vectors_path: str | os.PathLike) -> dict[str, Any] | None:
    path = sidecar_path(vectors_path)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CorpusError(f"{path}: not valid JSON ({exc})") from exc


class VectorsWriter:
    """Writes to a temporary file beside the target and renames it into place on `close(metadata)`."""

    def __init__(self, path: str | os.PathLike, encoder: Any) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self._handle = open(self._partial, "w", encoding="utf-8")
        self._encoder = encoder
        self.count = 0

    def write(self, doc: CorpusDocument, term_ids: np.ndarray, weights: np.ndarray) -> None:
        token = self._encoder.token
        # str(np.float32) is the shortest decimal that reads back to the same float32.
        vector = {token(t): float(str(w)) for t, w in zip(term_ids.tolist(), weights)}
        record = {"id": doc.id, "title": doc.title, "text": doc.text, "vector": vector}
        if doc.metadata:  # kept, so a build from the saved vectors has the same filterable fields
            record["metadata"] = doc.metadata
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self, metadata: dict[str, Any]) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._partial, self.path)
        sidecar = sidecar_path(self.path)
        tmp = sidecar.with_name(f".{sidecar.name}.partial-{os.getpid()}")
        tmp.write_text(json.dumps({**metadata, "documents": self.count}, indent=1, sort_keys=True) + "\n",
                       encoding="utf-8")
        os.replace(tmp, sidecar)

    def abort(self) -> None:
        self._handle.close()
        self._partial.unlink(missing_ok=True)
