"""Request and response models of the HTTP API (the contract in docs/design.md).

Request models are built from the settings (`request_models(settings)`), so their limits (k, query length,
query terms, batch size) are enforced by pydantic and published in the OpenAPI schema that clients and
the schemathesis test read. Requests are strict: unknown fields, wrong types and non-finite numbers are 4xx.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic_core import PydanticCustomError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator, model_validator

from service.settings import Settings

# A SPLADE query has tens of terms; this only bounds the work a single request can ask for.
MAX_VECTOR_ENTRIES = 4096
MAX_TOKEN_CHARS = 200
MAX_SCORER_NAME_CHARS = 64
# pydantic error type of a request with both or neither of query/vector (errors.py names the field).
QUERY_FORM_ERROR = "query_or_vector"

Token = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TOKEN_CHARS)]
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _check_unicode(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # e.g. a lone surrogate from a "\ud800" JSON escape: the tokenizer cannot take it.
        raise ValueError(f"{what} contains invalid Unicode (a lone surrogate)") from None
    return text


class FusionWeights(BaseModel):
    """Per-retriever weights of a hybrid request (finite, >= 0); an absent one keeps the server's."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    splade: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] | None = None
    bm25: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] | None = None


class SearchRequestBase(BaseModel):
    """Fields and rules shared by every `SearchRequest`; limits are filled in by `request_models`."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    query: str | None = None
    vector: dict[Token, Weight] | None = None
    k: int = 10
    query_max_terms: int | None = None
    include_text: bool = False
    explain: bool = False
    scorer: str | None = None
    scorer_options: dict[str, float] | None = None
    mode: Literal["splade", "bm25", "hybrid"] | None = None
    fusion: Literal["rrf", "linear"] | None = None
    fusion_weights: FusionWeights | None = None
    normalization: Literal["minmax", "zscore"] | None = None
    rank_constant: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] | None = None
    query_weight_mass: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = None
    query_weight_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    two_phase_ratio: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    # Metadata filter (engine.filters, docs/filters.md): parsed and checked by the engine, whose errors name the
    # path (e.g. filter.and[1].year.gte); here only "a JSON object".
    filter: dict[str, Any] | None = None

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, query: str | None) -> str | None:
        if query is None:
            return None
        if not query.strip():
            raise ValueError("query is empty or only whitespace")
        return _check_unicode(query, "query")

    @field_validator("vector")
    @classmethod
    def _vector_tokens_are_text(cls, vector: dict[str, float] | None) -> dict[str, float] | None:
        if vector is None:
            return None
        for token in vector:
            _check_unicode(token, "vector token")
        return vector

    @model_validator(mode="after")
    def _exactly_one_query_form(self):
        if (self.query is None) == (self.vector is None):
            raise PydanticCustomError(
                QUERY_FORM_ERROR, "give exactly one of `query` (text) or `vector` ({token: weight})"
            )
        return self


@dataclass(frozen=True)
class RequestModels:
    search: type[SearchRequestBase]
    batch: type[BaseModel]


def request_models(settings: Settings) -> RequestModels:
    search = create_model(
        "SearchRequest",
        __base__=SearchRequestBase,
        query=(
            Annotated[str, StringConstraints(min_length=1, max_length=settings.max_query_chars, pattern=r"\S")]
            | None,
            Field(None, description=f"Query text, at most {settings.max_query_chars} characters."),
        ),
        vector=(
            Annotated[dict[Token, Weight], Field(min_length=1, max_length=MAX_VECTOR_ENTRIES)] | None,
            Field(None, description="A raw sparse query {token: weight}; weights finite and >= 0."),
        ),
        k=(int, Field(settings.default_k, ge=1, le=settings.max_k, description="Hits to return.")),
        query_max_terms=(
            int | None,
            Field(
                None, ge=1, le=settings.max_query_terms,
                description=f"Keep the heaviest query terms only (default and maximum {settings.max_query_terms}).",
            ),
        ),
        include_text=(bool, Field(False, description="Return each hit's title and text.")),
        explain=(bool, Field(False, description="Return query terms and per-hit term contributions.")),
        scorer=(
            Annotated[str, StringConstraints(min_length=1, max_length=MAX_SCORER_NAME_CHARS)] | None,
            Field(None, description="Scorer to use (GET /info lists what the index serves); default: the server's."),
        ),
        scorer_options=(
            Annotated[dict[Annotated[str, StringConstraints(min_length=1, max_length=MAX_SCORER_NAME_CHARS)],
                           Annotated[float, Field(allow_inf_nan=False)]], Field(max_length=16)] | None,
            Field(None, description="The scorer's query-time knobs, each within the limits GET /info lists."),
        ),
    )
    batch = create_model(
        "BatchSearchRequest",
        __config__=ConfigDict(extra="forbid", frozen=True, strict=True),
        queries=(list[search], Field(..., min_length=1, max_length=settings.max_batch_queries)),
    )
    return RequestModels(search=search, batch=batch)


# Response models: used for the OpenAPI schema; handlers serialise with orjson directly for speed.
class TimingsMs(BaseModel):
    tokenize: float
    queue: float
    encode: float
    score: float
    total: float


class HitOut(BaseModel):
    id: str
    score: float
    title: str | None = None
    text: str | None = None
    contributions: dict[str, float] | None = None
    subqueries: dict[str, dict[str, float | int | None]] | None = None  # hybrid + explain: score and rank
    passage: dict[str, int] | None = None  # passage index: {"index", "start", "end"} of the passage that matched


class SearchResponse(BaseModel):
    hits: list[HitOut]
    query_terms: list[tuple[str, float]] | None = None
    postings_traversed: int
    scorer: str
    mode: str = "splade"
    # The served index generation that answered (+1 on every hot swap): every hit of a response comes from it.
    generation: int = 0
    timings_ms: TimingsMs


class BatchSearchResponse(BaseModel):
    results: list[SearchResponse]
    timings_ms: TimingsMs


class ErrorDetail(BaseModel):
    field: str
    message: str
    limit: int | float | str | None = None


class ErrorInfo(BaseModel):
    type: str
    message: str
    details: list[ErrorDetail]


class ErrorResponse(BaseModel):
    error: ErrorInfo


class Health(BaseModel):
    status: str


class ScorersInfo(BaseModel):
    default: str
    available: list[str]
    details: dict[str, dict]
    configs: dict[str, dict]


class Info(BaseModel):
    model: dict
    index: dict
    provider: str
    # The served query graph: file, variant (fp32/int8/fp16/lookup) and its parity figures from the manifest.
    encoder: dict | None = None
    scorers: ScorersInfo
    modes: list[str] = ["splade"]
    fusion: dict = {}
    # Hot swap (service/reloader.py): generation, segments, deleted documents, last reload outcome and error.
    lifecycle: dict | None = None
    metadata: dict = {}  # {"schema": {field: type}, "limits", "operators"}: what a `filter` may use
    settings: dict


class ReloadResponse(BaseModel):
    generation: int
    swaps: int
    refusals: int
    last_outcome: str
    last_error: str | None = None
    segments: int
    deleted_documents: int
    documents: int
