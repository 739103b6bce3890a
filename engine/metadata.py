"""Document metadata: the `metadata` index part (typed columns, memory-mapped) and its one type rule.

A document may carry a `metadata` object. Each indexed top-level field has one type:

    keyword        a string                      codes int32 [documents] (-1 = missing) + the sorted dictionary
    integer        a JSON integer (int64 range)  values int64 [documents] + present bool [documents]
    float          a number (integers accepted)  values float64 [documents] + present bool [documents]
    boolean        true / false                  values int8 [documents]: 1, 0, or -1 = missing
    keyword_list   a list of strings             CSR: offsets int64 [documents + 1] + codes int32 + dictionary

Keyword dictionaries are string tables (engine.string_table) sorted by UTF-8 bytes, so a value's code is found
by binary search and equal values share one code. A missing value, `null` and (for a list) an empty list are
all "no value": no equality, `in` or range condition matches it (`not` does). Files are named by the field's
number (`metadata.f<N>.*`), never by its name, so any field name is safe on disk.

By default every top-level field of a supported type is indexed with the type of its first non-null value;
a declared schema ({field: type}) indexes exactly the fields it names, with their declared types. A value of
the wrong type for an indexed field is an error (`MetadataTypeError` at build time, naming the document,
the field and the type; `check_document_metadata` gives the online path an InvalidQueryError naming the field).
Nested objects, lists of non-strings and fields named like a filter operator (`and`, `or`, `not`) are not
indexed: they are skipped and reported in the part's params (`skipped`).

Memory while building: `MetadataWriter` buffers `CHUNK` documents per column and appends them to scratch files;
what grows with the corpus in memory is only the keyword dictionaries (distinct values), counted against the
budget it is given (a share of --memory-budget-mb): more distinct values than that is a clear error.
"""
from __future__ import annotations

import json
import math
import os
import threading
import weakref
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.arrays import create_array
from engine.errors import EngineError, IndexFormatError, InvalidQueryError
from engine.manifest import PartInfo
from engine.string_table import StringTable, StringTableWriter

PART = "metadata"
PART_VERSION = 1
KEYWORD, INTEGER, FLOAT, BOOLEAN, KEYWORD_LIST = "keyword", "integer", "float", "boolean", "keyword_list"
TYPES = (KEYWORD, INTEGER, FLOAT, BOOLEAN, KEYWORD_LIST)
RESERVED_NAMES = frozenset({"and", "or", "not"})  # the filter language's operators (engine.filters)
MAX_FIELDS = 256          # indexed fields per index; later new fields are skipped and reported
MAX_FIELD_NAME_CHARS = 200
CHUNK = 1 << 16           # documents buffered per column before they are appended to the scratch file
DICTIONARY_ENTRY_OVERHEAD = 120  # bytes a distinct keyword costs in the build's dictionary besides its text
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


class MetadataTypeError(EngineError, ValueError):
    """A metadata value that does not have its field's type (or a declared schema that is not valid)."""

    def __init__(self, field: str, expected: str, value: Any, doc_id: str | None = None) -> None:
        prefix = f"document {doc_id!r}: " if doc_id is not None else ""
        super().__init__(f"{prefix}metadata field {field!r} must be {describe(expected)}, got {_shown(value)}")
        self.field, self.expected, self.value, self.doc_id = field, expected, value, doc_id


class MetadataBudgetError(EngineError, ValueError):
    """The keyword dictionaries of a build need more memory than their share of the budget."""


def describe(type_name: str) -> str:
    return {KEYWORD: "a keyword (string)", INTEGER: "an integer", FLOAT: "a number", BOOLEAN: "a boolean",
            KEYWORD_LIST: "a list of keywords (strings)"}.get(type_name, type_name)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return (text[:60] + "...") if len(text) > 63 else text


# -- the one type rule --------------------------------------------------------------------------------------------
def infer_type(value: Any) -> str | None:
    """The type a first value gives its field; None for values that are not indexed (null, objects, ...)."""
    if isinstance(value, bool):
        return BOOLEAN
    if isinstance(value, int):
        return INTEGER
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return KEYWORD
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return KEYWORD_LIST
    return None


def coerce(field: str, type_name: str, value: Any) -> Any:
    """`value` as stored for a field of `type_name` (None = missing); MetadataTypeError if it has another type."""
    if value is None:
        return None
    if type_name == BOOLEAN:
        ok = isinstance(value, bool)
    elif type_name == INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
    elif type_name == FLOAT:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif type_name == KEYWORD:
        ok = isinstance(value, str)
    elif type_name == KEYWORD_LIST:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        raise ValueError(f"unknown metadata type {type_name!r}")
    if not ok:
        raise MetadataTypeError(field, type_name, value)
    return value


def parse_schema(raw: Any, where: str = "metadata schema") -> dict[str, str]:
    """A declared schema {field: type}, checked (MetadataTypeError naming the field)."""
    if not isinstance(raw, dict) or len(raw) > MAX_FIELDS:
        raise ValueError(f"{where}: must be a JSON object {{field: type}} of at most {MAX_FIELDS} fields")
    schema = {}
    for name, type_name in raw.items():
        problem = field_name_problem(name)
        if problem:
            raise ValueError(f"{where}: field name {name!r} cannot be indexed ({problem})")
        if type_name not in TYPES:
            raise ValueError(f"{where}: field {name!r}: type must be one of {', '.join(TYPES)}, got {_shown(type_name)}")
        schema[name] = type_name
    return schema


def load_schema_file(path: str | os.PathLike) -> dict[str, str]:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON file {{field: type}} ({exc})") from None
    return parse_schema(raw, str(path))


def field_name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not name:
        return "empty"
    if name in RESERVED_NAMES:
        return f"{name!r} is a filter operator"
    if len(name) > MAX_FIELD_NAME_CHARS:
        return f"longer than {MAX_FIELD_NAME_CHARS} characters"
    return None


def check_document_metadata(metadata: Any, schema: Mapping[str, str], field_prefix: str = "metadata"
                            ) -> dict[str, Any]:
    """The online write path's check: the indexed fields of `metadata` coerced to their types, or an
    InvalidQueryError naming `<field_prefix>.<field>` and the expected type (a 4xx at the HTTP edge)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidQueryError(field_prefix, f"must be an object, got {_shown(metadata)}")
    out = {}
    for name, value in metadata.items():
        type_name = schema.get(name)
        if type_name is None:
            continue
        try:
            out[name] = coerce(name, type_name, value)
        except MetadataTypeError:
            raise InvalidQueryError(f"{field_prefix}.{name}", f"must be {describe(type_name)}, got {_shown(value)}",
                                    type_name) from None
    return out


# -- building -----------------------------------------------------------------------------------------------------
class _Spool:
    """A typed array appended in memory blocks of CHUNK values and spilled to a scratch file."""

    def __init__(self, path: Path, typecode: str) -> None:
        self.path = path
        self.typecode = typecode
        self.dtype = np.dtype({"b": np.int8, "i": np.int32, "q": np.int64, "d": np.float64, "B": np.uint8}[typecode])
        self.block = array(typecode)
        self.count = 0
        self._file = open(path, "wb")

    def append(self, value) -> None:
        self.block.append(value)
        self.count += 1
        if len(self.block) >= CHUNK:
            self.flush()

    def extend_constant(self, value, count: int) -> None:
        while count > 0:
            step = min(count, CHUNK)
            self.block.extend([value] * step)
            self.count += step
            count -= step
            self.flush()

    def flush(self) -> None:
        self.block.tofile(self._file)
        self.block = array(self.typecode)

    def chunks(self):
        """The spooled values in chunks of CHUNK (numpy arrays), after `close`."""
        with open(self.path, "rb") as handle:
            while True:
                data = np.fromfile(handle, dtype=self.dtype, count=CHUNK)
                if not len(data):
                    return
                yield data

    def close(self) -> None:
        self.flush()
        self._file.close()

    def copy_to(self, directory: Path, name: str, dtype, transform=None) -> None:
        out = create_array(directory, name, dtype, self.count)
        position = 0
        for data in self.chunks():
            out[position:position + len(data)] = transform(data) if transform is not None else data
            position += len(data)
        out.flush()
        del out


class _Dictionary:
    """Distinct keywords of one field in first-seen order (provisional codes), sorted when written."""

    def __init__(self, owner: MetadataWriter) -> None:
        self.codes: dict[str, int] = {}
        self.owner = owner

    def code(self, value: str) -> int:
        code = self.codes.get(value)
        if code is None:
            code = self.codes[value] = len(self.codes)
            self.owner._grow(len(value.encode("utf-8")) + DICTIONARY_ENTRY_OVERHEAD)
        return code

    def write(self, directory: Path, name: str) -> np.ndarray:
        """Write the sorted dictionary; return provisional code -> final code."""
        values = list(self.codes)
        order = sorted(range(len(values)), key=lambda i: values[i].encode("utf-8"))
        writer = StringTableWriter(directory, name)
        for i in order:
            writer.append(values[i])
        writer.close()
        final = np.empty(len(values), dtype=np.int32)
        final[np.asarray(order, dtype=np.int64)] = np.arange(len(values), dtype=np.int32)
        return final


class _Column:
    def __init__(self, writer: MetadataWriter, number: int, name: str, type_name: str, backfill: int) -> None:
        self.number, self.name, self.type = number, name, type_name
        self.present = 0
        scratch = writer.scratch_dir
        stem = f"f{number}"
        if type_name in (KEYWORD, KEYWORD_LIST):
            self.dictionary = _Dictionary(writer)
        if type_name == KEYWORD:
            self.values = _Spool(scratch / f"{stem}.codes", "i")
            self.values.extend_constant(-1, backfill)
        elif type_name == KEYWORD_LIST:
            self.ends = _Spool(scratch / f"{stem}.ends", "q")
            self.ends.extend_constant(0, backfill)
            self.values = _Spool(scratch / f"{stem}.codes", "i")
        elif type_name == BOOLEAN:
            self.values = _Spool(scratch / f"{stem}.values", "b")
            self.values.extend_constant(-1, backfill)
        else:
            self.values = _Spool(scratch / f"{stem}.values", "q" if type_name == INTEGER else "d")
            self.flags = _Spool(scratch / f"{stem}.present", "B")
            self.values.extend_constant(0, backfill)
            self.flags.extend_constant(0, backfill)

    def append(self, value: Any) -> None:
        """`value` already coerced (None = missing)."""
        self.present += value is not None and value != []
        if self.type == KEYWORD:
            self.values.append(-1 if value is None else self.dictionary.code(value))
        elif self.type == KEYWORD_LIST:
            for item in value or ():
                self.values.append(self.dictionary.code(item))
            self.ends.append(self.values.count)
        elif self.type == BOOLEAN:
            self.values.append(-1 if value is None else int(value))
        else:
            self.values.append(0 if value is None else value)
            self.flags.append(value is not None)

    def files(self) -> list[str]:
        return field_files(self.number, self.type)

    def write(self, directory: Path) -> dict[str, Any]:
        stem = f"{PART}.f{self.number}"
        info: dict[str, Any] = {"type": self.type, "number": self.number, "present": int(self.present)}
        if self.type in (KEYWORD, KEYWORD_LIST):
            final = self.dictionary.write(directory, f"{stem}.dict")
            info["distinct"] = len(final)
            self.values.close()
            remap = (lambda codes: np.where(codes >= 0, final[np.maximum(codes, 0)], -1)) if len(final) else None
            self.values.copy_to(directory, f"{stem}.codes.npy", np.int32, remap)
            if self.type == KEYWORD_LIST:
                self.ends.close()
                offsets = create_array(directory, f"{stem}.offsets.npy", np.int64, self.ends.count + 1)
                position = 1
                for data in self.ends.chunks():
                    offsets[position:position + len(data)] = data
                    position += len(data)
                offsets.flush()
                del offsets
                info["values"] = int(self.values.count)
        elif self.type == BOOLEAN:
            self.values.close()
            self.values.copy_to(directory, f"{stem}.values.npy", np.int8)
        else:
            self.values.close()
            self.flags.close()
            self.values.copy_to(directory, f"{stem}.values.npy", np.int64 if self.type == INTEGER else np.float64)
            self.flags.copy_to(directory, f"{stem}.present.npy", np.bool_, lambda f: f.astype(bool))
        return info


def field_files(number: int, type_name: str) -> list[str]:
    stem = f"{PART}.f{number}"
    if type_name == KEYWORD:
        return [f"{stem}.codes.npy", f"{stem}.dict.bin", f"{stem}.dict.offsets.npy"]
    if type_name == KEYWORD_LIST:
        return [f"{stem}.offsets.npy", f"{stem}.codes.npy", f"{stem}.dict.bin", f"{stem}.dict.offsets.npy"]
    if type_name == BOOLEAN:
        return [f"{stem}.values.npy"]
    return [f"{stem}.values.npy", f"{stem}.present.npy"]


class MetadataWriter:
    """Feed each document's metadata in document-number order (`add`), then `write` the part's files.

    `scratch_dir` holds the spooled columns (a directory the caller removes, e.g. inside the staging
    directory); `memory_budget_bytes` bounds the keyword dictionaries.
    """

    def __init__(self, scratch_dir: Path, schema: Mapping[str, str] | None = None,
                 memory_budget_bytes: int = 64 << 20) -> None:
        self.scratch_dir = Path(scratch_dir)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        self.declared = dict(schema) if schema is not None else None
        self.memory_budget_bytes = int(memory_budget_bytes)
        self.dictionary_bytes = 0
        self.columns: dict[str, _Column] = {}
        self.skipped: dict[str, str] = {}
        self.ignored_by_schema: set[str] = set()
        self.num_documents = 0
        self._current_field = ""
        if self.declared is not None:
            for name, type_name in self.declared.items():
                self._add_column(name, type_name)

    def _add_column(self, name: str, type_name: str) -> _Column:
        column = self.columns[name] = _Column(self, len(self.columns), name, type_name, self.num_documents)
        return column

    def _grow(self, nbytes: int) -> None:
        self.dictionary_bytes += nbytes
        if self.dictionary_bytes > self.memory_budget_bytes:
            distinct = len(self.columns[self._current_field].dictionary.codes)
            raise MetadataBudgetError(
                f"metadata field {self._current_field!r}: {distinct} distinct keywords, and the keyword "
                f"dictionaries outgrew their share of --memory-budget-mb ({self.memory_budget_bytes / 2**20:.2f} "
                "MiB): raise the budget, or leave the field out with --metadata-schema")

    def add(self, doc_id: str, metadata: Mapping[str, Any] | None) -> None:
        if metadata is None:
            metadata = {}
        elif not isinstance(metadata, Mapping):
            raise MetadataTypeError("metadata", "an object {field: value}", metadata, doc_id)
        for name, value in metadata.items():
            column = self.columns.get(name)
            if column is None:
                self._consider_new_field(name, value)
                column = self.columns.get(name)
                if column is None:
                    continue
            self._current_field = name
            try:
                coerced = coerce(name, column.type, value)
            except MetadataTypeError as exc:
                raise MetadataTypeError(name, column.type, value, doc_id) from exc
            column.append(coerced)
        self.num_documents += 1
        # every column gets one entry per document: missing for fields this document did not give
        for name, column in self.columns.items():
            if _length(column) < self.num_documents:
                column.append(None)

    def _consider_new_field(self, name: str, value: Any) -> None:
        if self.declared is not None:
            self.ignored_by_schema.add(name)
            return
        if value is None or value == []:
            return  # no type yet: the field is indexed when a typed value first appears
        if name in self.skipped:
            return
        problem = field_name_problem(name)
        type_name = infer_type(value)
        if problem is None and type_name is None:
            problem = ("a nested object" if isinstance(value, dict) else
                       "a list of non-strings" if isinstance(value, list) else f"an unsupported {type(value).__name__}")
        if problem is None and len(self.columns) >= MAX_FIELDS:
            problem = f"more than {MAX_FIELDS} fields"
        if problem is not None:
            self.skipped[name] = problem
            return
        self._add_column(name, type_name)

    @property
    def schema(self) -> dict[str, str]:
        return {name: column.type for name, column in self.columns.items()}

    def write(self, directory: Path) -> tuple[str, PartInfo]:
        directory = Path(directory)
        fields = {name: column.write(directory) for name, column in self.columns.items()}
        files = [f for column in self.columns.values() for f in column.files()]
        for spool in self.scratch_dir.iterdir():
            spool.unlink()
        self.scratch_dir.rmdir()
        params = {"documents": self.num_documents, "fields": fields, "declared": self.declared is not None,
                  "skipped": dict(sorted(self.skipped.items())),
                  "not_in_schema": sorted(self.ignored_by_schema)[:100]}
        return PART, PartInfo(version=PART_VERSION, files=files, params=params)


def _length(column: _Column) -> int:
    return column.ends.count if column.type == KEYWORD_LIST else column.values.count


# -- reading ------------------------------------------------------------------------------------------------------
class KeywordDictionary:
    """The sorted distinct values of a keyword field: value -> code by binary search over the mapped table."""

    def __init__(self, table: StringTable) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    def code(self, value: str) -> int:
        """The code of `value`, or -1 if no document has it."""
        key = value.encode("utf-8")
        lo, hi = 0, len(self.table)
        blob, offsets = self.table.blob, self.table.offsets
        while lo < hi:
            mid = (lo + hi) // 2
            found = bytes(blob[int(offsets[mid]):int(offsets[mid + 1])])
            if found < key:
                lo = mid + 1
            elif found > key:
                hi = mid
            else:
                return mid
        return -1

    def codes(self, values) -> np.ndarray:
        """The distinct codes of the values some document has (ascending)."""
        found = {self.code(v) for v in values}
        return np.asarray(sorted(c for c in found if c >= 0), dtype=np.int32)


class MetadataField:
    """One indexed field's columns (memory-mapped)."""

    def __init__(self, index, name: str, info: Mapping[str, Any], num_documents: int) -> None:
        self.name = name
        self.type = info["type"]
        self.num_documents = num_documents
        number = int(info["number"])
        stem = f"{PART}.f{number}"
        directory = index.path
        self._rows: np.ndarray | None = None
        if self.type in (KEYWORD, KEYWORD_LIST):
            self.dictionary = KeywordDictionary(StringTable(directory, f"{stem}.dict", int(info["distinct"])))
        if self.type == KEYWORD:
            self.codes = index.part_array(PART, f"{stem}.codes.npy", np.int32, num_documents)
        elif self.type == KEYWORD_LIST:
            self.offsets = index.part_array(PART, f"{stem}.offsets.npy", np.int64, num_documents + 1)
            self.codes = index.part_array(PART, f"{stem}.codes.npy", np.int32, int(info["values"]))
        elif self.type == BOOLEAN:
            self.values = index.part_array(PART, f"{stem}.values.npy", np.int8, num_documents)
        else:
            dtype = np.int64 if self.type == INTEGER else np.float64
            self.values = index.part_array(PART, f"{stem}.values.npy", dtype, num_documents)
            self.present = index.part_array(PART, f"{stem}.present.npy", np.bool_, num_documents)

    def value(self, doc: int) -> Any:
        """One document's value (None: no value)."""
        if self.type == KEYWORD:
            code = int(self.codes[doc])
            return None if code < 0 else self.dictionary.table.get(code)
        if self.type == KEYWORD_LIST:
            codes = self.codes[int(self.offsets[doc]):int(self.offsets[doc + 1])]
            return [self.dictionary.table.get(int(c)) for c in codes] or None
        if self.type == BOOLEAN:
            flag = int(self.values[doc])
            return None if flag < 0 else bool(flag)
        if not self.present[doc]:
            return None
        return int(self.values[doc]) if self.type == INTEGER else float(self.values[doc])

    def rows(self) -> np.ndarray:
        """keyword_list: the document number of each stored value (derived once, 4 bytes a value)."""
        if self._rows is None:
            counts = np.diff(self.offsets)
            self._rows = np.repeat(np.arange(self.num_documents, dtype=np.int32), counts)
        return self._rows

    def close(self) -> None:
        if self.type in (KEYWORD, KEYWORD_LIST):
            self.dictionary.table.close()


class Metadata:
    """The metadata part of one opened index: its schema and its fields."""

    def __init__(self, index) -> None:
        info = index.parts.get(PART)
        if info is None:
            raise IndexFormatError(f"{index.path}: the index has no {PART!r} part")
        params = info.params
        if int(params.get("documents", -1)) != index.num_documents:
            raise IndexFormatError(f"{index.path}: the {PART!r} part has {params.get('documents')} documents, "
                                   f"the index {index.num_documents}")
        self.num_documents = index.num_documents
        self.fields = {name: MetadataField(index, name, field, index.num_documents)
                       for name, field in params.get("fields", {}).items()}
        self.schema = {name: field.type for name, field in self.fields.items()}

    def document(self, doc_number: int) -> dict[str, Any]:
        """The indexed metadata of one document as JSON values (fields without a value left out): what a merge
        of segments feeds back into a MetadataWriter."""
        out: dict[str, Any] = {}
        for name, field in self.fields.items():
            value = field.value(int(doc_number))
            if value is not None:
                out[name] = value
        return out


_OPENED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def has_metadata(index) -> bool:
    return PART in index.parts


def metadata_of(index) -> Metadata | None:
    """The index's metadata (opened once per index), or None if it has no metadata part."""
    segments = getattr(index, "segments", None)
    if segments is not None:  # a generation (engine.segments): its schema is its first segment's
        return metadata_of(segments[0].index)
    if not has_metadata(index):
        return None
    with _LOCK:
        opened = _OPENED.get(index)
        if opened is None:
            opened = _OPENED[index] = Metadata(index)
    return opened


def schema_of(index) -> dict[str, str]:
    """{field: type} of the indexed metadata fields ({} when the index has none)."""
    info = index.parts.get(PART)
    return {} if info is None else {name: f["type"] for name, f in info.params.get("fields", {}).items()}
