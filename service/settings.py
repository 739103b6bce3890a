"""The service's settings: one frozen object, every field an environment variable with the `SPLADE_` prefix.

Each field's description says its unit and why it exists; `docs/service.md` renders the same table.
Invalid values fail start-up with `SettingsError`, whose message names the variable and the limit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.limits import limit_of

ENV_PREFIX = "SPLADE_"
SECRET_FIELDS = ("api_key",)  # shown as "set"/null by public_dict: /info and the start-up log


class SettingsError(ValueError):
    """Settings that cannot be served; the message names every bad variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    index_dir: Path = Field(
        Path("data/indexes/python-docs"),
        description="Index directory written by `python -m index_builder build`.",
    )
    model_dir: Path = Field(
        Path("data/models/splade-tiny"),
        description="Model artifact directory (manifest.json, tokenizer.json, query.onnx or query_weights.npy).",
    )
    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="ONNX Runtime execution provider: auto uses CUDA when present, else CPU."
    )
    intra_op_threads: int = Field(
        0, ge=0, le=256, description="ONNX Runtime threads inside one encoder call (0 = one per core)."
    )
    use_int8: bool = Field(
        False,
        description="Serve the dynamic-int8 query encoder (query.int8.onnx, made by `export --int8`): faster on "
        "CPU, small quality cost (see docs/encoders.md).",
    )
    use_fp16: bool = Field(
        False,
        description="Serve the fp16 query encoder (query.fp16.onnx, made by bench/gpu_checks.py --write-fp16) "
        "on CUDA; unverified on a GPU so far (see docs/encoders.md).",
    )
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime graph optimization level of the query encoder session."
    )
    allow_spinning: bool = Field(
        False,
        description="Let ONNX Runtime threads spin between operators; off because on shared cores it doubled "
        "single-query latency here.",
    )
    scorer: str | None = Field(
        None,
        min_length=1,
        description="Scorer used when a request names none; unset = the one the index manifest names "
        "(`exact` for every index today). Must be a scorer the index can serve.",
    )
    recall_sample_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Fraction of queries answered by an approximate scorer that are re-scored exactly in the "
        "background to measure its recall (gauge `splade_recall_at_k`); 0 turns the monitor off.",
    )
    recall_queue_limit: int = Field(
        64, ge=1, le=100_000, description="Sampled queries waiting for re-scoring; more are dropped (and counted)."
    )
    recall_window: int = Field(
        200, ge=1, le=1_000_000, description="Samples the recall gauge averages over (the most recent ones)."
    )
    mode: Literal["splade", "bm25", "hybrid"] = Field(
        "splade",
        description="Query mode when a request names none: the SPLADE field, the BM25 field, or both fused "
        "(bm25 and hybrid need an index with the BM25 field; docs/hybrid.md).",
    )
    fusion: Literal["rrf", "linear"] = Field(
        "linear",
        description="Hybrid fusion when a request names none: reciprocal rank fusion or a normalized linear "
        "combination (chosen on SciFact's train queries: docs/hybrid.md).",
    )
    fusion_normalization: Literal["minmax", "zscore"] = Field(
        "zscore", description="Score normalization of the linear fusion when a request names none."
    )
    fusion_rank_constant: float = Field(
        60.0, ge=0, le=1e6, description="RRF rank constant: a hit at rank r adds weight / (constant + r)."
    )
    fusion_weight_splade: float = Field(1.0, ge=0, le=1e6, description="Hybrid weight of the SPLADE list.")
    fusion_weight_bm25: float = Field(2.0, ge=0, le=1e6, description="Hybrid weight of the BM25 list.")
    min_query_weight_mass: float = Field(
        0.5, gt=0, le=1,
        description="Smallest `query_weight_mass` a request may ask for (keep the heaviest query terms holding "
        "this share of the query's weight; docs/hybrid.md).",
    )
    max_query_weight_ratio: float = Field(
        0.5, ge=0, le=1,
        description="Largest `query_weight_ratio` a request may ask for (drop query terms lighter than this "
        "ratio of the heaviest).",
    )
    max_two_phase_ratio: float = Field(
        0.5, ge=0, le=1,
        description="Largest `two_phase_ratio` a request may ask for (phase 1 retrieves max(10k, 100) candidates "
        "with the terms of at least this ratio of the heaviest weight; phase 2 rescores them with every term).",
    )
    filter_max_depth: int = Field(
        8, ge=1, le=64,
        description="Deepest nesting of and / or / not in a request's `filter` (docs/filters.md).",
    )
    filter_max_clauses: int = Field(
        64, ge=1, le=10_000,
        description="Most field conditions in one `filter`: each costs one pass over a metadata column.",
    )
    filter_max_in_values: int = Field(
        1024, ge=1, le=100_000,
        description="Most values in one `in` list of a `filter`.",
    )
    default_k: int = Field(10, ge=1, description="Hits returned when a request gives no `k`.")
    max_k: int = Field(1000, ge=1, le=100_000, description="Largest `k` a request may ask for.")
    max_query_terms: int = Field(
        64,
        ge=1,
        le=4096,
        description="Query terms kept after pruning (by weight): the server maximum and the default for "
        "requests without `query_max_terms`.",
    )
    max_query_chars: int = Field(
        2000, ge=1, le=1_000_000, description="Longest query text accepted, in characters."
    )
    max_batch_queries: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Most queries in one `POST /search/batch` request (must not exceed the queue limit).",
    )
    encoder_max_batch_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="Most query texts encoded in one encoder call (1 turns micro-batching off).",
    )
    encoder_max_wait_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="How long (ms) the oldest waiting query may wait for others to fill a batch; 0 = batch "
        "only what queued while the encoder was busy (no added latency; best on CPU).",
    )
    queue_limit: int = Field(
        256,
        ge=1,
        le=1_000_000,
        description="Query texts admitted but not yet encoded; beyond it requests get 503 + Retry-After.",
    )
    request_timeout_s: float = Field(
        10.0, gt=0, le=3600, description="A search not answered within this many seconds gets 504."
    )
    score_threads: int = Field(
        2, ge=1, le=256, description="Threads scoring queries in parallel (Numba releases the GIL)."
    )
    search_threads: int = Field(
        1,
        ge=1,
        le=64,  # engine.scorers.intra_query.MAX_THREADS (not imported: this module loads without Numba)
        description="Threads one query may use (`exact-blocked` splits its document ranges between them): the "
        "default and the cap of the request option `scorer_options.threads`. 1 gives the best throughput under "
        "concurrent load; more lowers a lone query's latency when cores are idle (docs/index.md).",
    )
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level of the service and uvicorn."
    )
    api_key: SecretStr | None = Field(
        None,
        min_length=1,
        description="When set, /search, /search/batch and /info require it as `Authorization: Bearer <key>` or "
        "`X-API-Key: <key>` (else 401); /healthz, /readyz, /metrics and the page stay open. Never shown.",
    )
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=1_073_741_824,
        description="Largest request body accepted, in bytes; a larger one gets 413 before it is read whole.",
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins allowed by CORS (`*` for any); empty = no CORS headers at all.",
    )
    drain_timeout_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="On SIGTERM: readiness fails at once, then requests in flight get up to this long to "
        "finish before the process exits 0.",
    )
    encoder_max_batch_tokens: int = Field(
        0,
        ge=0,
        le=10_000_000,
        description="Most padded tokens (texts x longest text, estimated) in one encoder call; 0 = the device "
        "default: 256 on CPU, 16384 on CUDA (docs/service.md, \"Micro-batching policy\").",
    )
    ui: bool = Field(
        True,
        description="Serve the relevance workbench (a static page that uses the public API) at `/`; false "
        "turns it off (`/` answers 404).",
    )
    reload_poll_s: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="How often the index directory is checked for a new generation to hot-swap in "
        "(service/reloader.py); 0 = no watching (`POST /admin/reload` still works).",
    )
    reload_verify_checksums: bool = Field(
        True,
        description="Check every file's sha256 and the postings of a new generation before swapping it in "
        "(reads the whole index once per reload; false = sizes and manifest only).",
    )

    writes: bool = Field(
        False,
        description="Accept document writes (`PUT /documents`, `DELETE /documents`; service/writes.py): the service "
        "becomes the index's one writer. Needs SPLADE_API_KEY.",
    )
    max_write_documents: int = Field(
        256, ge=1, le=100_000, description="Most documents in one `PUT /documents` or ids in one `DELETE /documents`."
    )
    max_document_chars: int = Field(
        100_000, ge=1, le=10_000_000, description="Longest document text (and title) a write accepts, in characters."
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_no_key(cls, value):
        # `SPLADE_API_KEY=` (e.g. compose's ${SPLADE_API_KEY:-}) means "no key", not "the empty key".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _limits_are_consistent(self) -> Settings:
        if self.default_k > self.max_k:
            raise ValueError(
                f"{ENV_PREFIX}DEFAULT_K={self.default_k} is above {ENV_PREFIX}MAX_K={self.max_k}"
            )
        if self.use_int8 and self.use_fp16:
            raise ValueError(f"{ENV_PREFIX}USE_INT8 and {ENV_PREFIX}USE_FP16 are exclusive: choose one graph variant")
        if self.fusion_weight_splade <= 0 and self.fusion_weight_bm25 <= 0:
            raise ValueError(f"{ENV_PREFIX}FUSION_WEIGHT_SPLADE and {ENV_PREFIX}FUSION_WEIGHT_BM25 are both 0")
        if self.writes and self.api_key is None:
            raise ValueError(f"{ENV_PREFIX}WRITES=true needs {ENV_PREFIX}API_KEY: writes are never open")
        if self.max_batch_queries > self.queue_limit:
            # A batch request is admitted whole or not at all, so it must fit in the queue.
            raise ValueError(
                f"{ENV_PREFIX}MAX_BATCH_QUERIES={self.max_batch_queries} is above "
                f"{ENV_PREFIX}QUEUE_LIMIT={self.queue_limit}"
            )
        return self

    def public_dict(self) -> dict:
        """Every setting as JSON-ready values; a secret shows only whether it is set, never its value."""
        values = self.model_dump(mode="json", exclude=set(SECRET_FIELDS))
        values.update({name: ("set" if getattr(self, name) is not None else None) for name in SECRET_FIELDS})
        return values


def load_settings(**overrides) -> Settings:
    """Read settings from the environment (overrides win); raise `SettingsError` naming each bad field."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            limit = limit_of(error)
            suffix = f" (limit: {limit})" if limit is not None else ""
            got = f"; got {error.get('input')!r}" if field else ""
            problems.append(f"{name}: {error['msg']}{suffix}{got}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def settings_table() -> str:
    """The Markdown table of every setting (docs/service.md holds exactly this; a test keeps them equal)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else str(default.value if hasattr(default, "value") else default)
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{shown}` | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())  # python -m service.settings > the table for docs/service.md
