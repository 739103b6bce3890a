"""Request and response models of the write API (`PUT /documents`, `DELETE /documents`), built from the
settings so that their limits are enforced by pydantic and published in the OpenAPI schema."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from service.schemas import MAX_VECTOR_ENTRIES, Token
from service.settings import Settings

MAX_ID_CHARS = 512
DOCUMENT_FORM_ERROR = "text_or_vector"

DocumentId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=r"\S")]
DocumentWeight = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class DocumentInBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: DocumentId
    text: str | None = None
    title: str | None = None
    vector: dict[Token, DocumentWeight] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("text", "title", "id")
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains invalid Unicode (a lone surrogate)") from None
        return value

    @model_validator(mode="after")
    def _exactly_one_form(self):
        if (self.text is None) == (self.vector is None):
            raise PydanticCustomError(DOCUMENT_FORM_ERROR,
                                      "give exactly one of `text` (encoded by the server) or `vector` ({token: weight})")
        return self


@dataclass(frozen=True)
class WriteModels:
    document: type[DocumentInBase]
    put: type[BaseModel]
    delete: type[BaseModel]


def write_models(settings: Settings) -> WriteModels:
    chars = settings.max_document_chars
    document = create_model(
        "DocumentIn",
        __base__=DocumentInBase,
        text=(Annotated[str, StringConstraints(max_length=chars)] | None,
              Field(None, description=f"Document text, encoded with the index's model; at most {chars} characters.")),
        title=(Annotated[str, StringConstraints(max_length=chars)] | None, Field(None, description="Stored title.")),
        vector=(Annotated[dict[Token, DocumentWeight], Field(min_length=1, max_length=MAX_VECTOR_ENTRIES)] | None,
                Field(None, description="A pre-encoded document {token: weight}; weights finite and > 0.")),
    )
    put = create_model(
        "PutDocumentsRequest",
        __config__=ConfigDict(extra="forbid", frozen=True, strict=True),
        documents=(list[document], Field(..., min_length=1, max_length=settings.max_write_documents,
                                         description="Documents to add; an existing id is replaced.")),
    )
    delete = create_model(
        "DeleteDocumentsRequest",
        __config__=ConfigDict(extra="forbid", frozen=True, strict=True),
        ids=(list[DocumentId], Field(..., min_length=1, max_length=settings.max_write_documents,
                                     description="Ids to delete; every one must exist (else nothing is deleted).")),
    )
    return WriteModels(document=document, put=put, delete=delete)


class WriteResponse(BaseModel):
    generation: int            # the commit that holds the write (durable when this answer is sent)
    served_generation: int     # the served snapshot that shows it (the next search uses it)
    added: int = 0
    replaced: int = 0
    deleted: int = 0
    saturated_postings: int = 0
