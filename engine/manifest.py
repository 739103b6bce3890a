"""The index manifest, typed: what `manifest.json` must hold, and the optional parts an index may carry.

`format_version` is the major version: it changes only when the required files change meaning, and an index
of another major version is refused. Everything a newer feature adds is an optional *part*: an entry under
`parts` naming its files and parameters (e.g. a forward index, clustered postings, live-document bitmaps),
declared by the code that needs it. An index without a part still opens; a scorer that needs one says so
(`Scorer.requires`) and is not offered for that index. Unknown top-level keys (provenance: model, corpus,
build facts) are kept as they are.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import IndexFormatError

FORMAT_VERSION = 1
DEFAULT_SCORER = "exact"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Counts(_Strict):
    documents: int = Field(ge=0)
    postings: int = Field(ge=0)
    terms_with_postings: int = Field(0, ge=0)
    empty_documents: int = Field(0, ge=0)
    mean_terms_per_document: float = 0.0


class QuantizationInfo(_Strict):
    dtype: Literal["uint8", "uint16"]
    scale: float = Field(gt=0)
    max_impact: int = Field(ge=1)
    max_weight: float = Field(ge=0)
    method: str = "max"
    min_impact: int = 1


class FileEntry(_Strict):
    size: int = Field(ge=0)
    sha256: str


class PartInfo(_Strict):
    """An optional part: its own version, the files it owns (each also in `files`), and its parameters."""

    version: int = Field(ge=1)
    files: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)


class TunedConfig(_Strict):
    """A scorer configuration measured on sample queries and named by what it achieves (e.g. `recall99_k10`)."""

    scorer: str
    options: dict[str, int | float] = Field(default_factory=dict)  # integer knobs stay integers
    k: int = Field(ge=1)
    target_recall: float = Field(gt=0, le=1)
    measured_recall: float = Field(ge=0, le=1)
    queries: int = Field(ge=1)
    mean_ms: float | None = None
    p99_ms: float | None = None
    exact_mean_ms: float | None = None
    tuned_at: str = ""


class IndexManifest(_Strict):
    format_version: int
    vocab_size: int = Field(ge=1)
    tokenizer_sha256: str
    counts: Counts
    quantization: QuantizationInfo
    files: dict[str, FileEntry]
    document_store: bool = False
    parts: dict[str, PartInfo] = Field(default_factory=dict)
    default_scorer: str = DEFAULT_SCORER  # a scorer name or the name of one of `configs`
    configs: dict[str, TunedConfig] = Field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def has_parts(self, names: frozenset[str] | set[str]) -> bool:
        return set(names) <= set(self.parts)


def parse_manifest(raw: Any, where: str) -> IndexManifest:
    """Validate a decoded manifest.json; IndexFormatError naming the file and every bad key."""
    if not isinstance(raw, dict):
        raise IndexFormatError(f"{where}: must hold a JSON object")
    if raw.get("format_version") != FORMAT_VERSION:
        raise IndexFormatError(
            f"{where}: format_version {raw.get('format_version')!r} is not the supported version {FORMAT_VERSION}")
    try:
        manifest = IndexManifest.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise IndexFormatError(f"{where}: {problems}") from None
    for name, part in manifest.parts.items():
        missing = [f for f in part.files if f not in manifest.files]
        if missing:
            raise IndexFormatError(f"{where}: part {name!r} names files the manifest does not list: {missing}")
    return manifest
