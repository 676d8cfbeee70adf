"""Request and response shapes of the REST API (they are also its OpenAPI documentation)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lookalike.feedback import MAX_FEEDBACK
from lookalike.search import MAX_OFFSET

MAX_K = 100


class SearchRequest(BaseModel):
    """A JSON search: exactly one of ``image_base64``, ``url``, ``id`` or ``ref``, or none of them with at
    least one ``positive`` id (the positives are then the query)."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str | None = Field(None, description="The query image, base64 (a data: URL prefix is allowed)")
    url: str | None = Field(None, description="An http(s) URL of the query image")
    id: str | None = Field(None, description="An indexed item: find items like it")
    ref: str | None = Field(None, description="The ref of an earlier uploaded query (repeat that search)")
    k: int = Field(10, ge=1, le=MAX_K)
    filter: dict[str, Any] | None = Field(None, description='e.g. {"label": ["Dress", "Skirt"], "price": {"lt": 50}}')
    min_score: float | None = Field(None, description="Drop results scoring below this")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Skip this many results first (the next page)")
    positive: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=MAX_FEEDBACK, description="Ids of items to find more like"
    )
    negative: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list, max_length=MAX_FEEDBACK, description="Ids of items to find less like"
    )

    @model_validator(mode="after")
    def one_query(self) -> SearchRequest:
        given = [name for name in ("image_base64", "url", "id", "ref") if getattr(self, name) is not None]
        if len(given) > 1 or (not given and not self.positive):
            raise ValueError(
                "give exactly one of image_base64, url, id, ref, or positive ids alone "
                f"(got {', '.join(given) or 'none'})"
            )
        return self


class Result(BaseModel):
    id: str
    score: float
    distance: float
    metadata: dict[str, Any]
    image_url: str
    thumbnail_url: str


class QueryInfo(BaseModel):
    type: Literal["upload", "base64", "url", "id", "ref", "feedback"]
    ref: str | None = None
    id: str | None = None
    url: str | None = None
    image_url: str | None = None


class SearchResponse(BaseModel):
    model: str
    query: QueryInfo
    took_ms: dict[str, float]
    results: list[Result]
    offset: int = 0
    next_offset: int | None = None
    """Where the next page starts, or None when this page was the last (fewer than k results)."""


class ItemOut(BaseModel):
    id: str
    metadata: dict[str, Any]
    image_url: str
    thumbnail_url: str


class Facets(BaseModel):
    fields: dict[str, dict[str, int]]


class Info(BaseModel):
    model: str
    dim: int
    metric: str
    kind: str
    items: int
    read_only: bool


class ReferenceImageRequest(BaseModel):
    """The reference design's ``/postImage`` body."""

    base64img: str
    k: int = Field(3, ge=1, le=MAX_K)


class ReferenceURLRequest(BaseModel):
    """The reference design's ``/postURL`` body."""

    url: str
    k: int = Field(3, ge=1, le=MAX_K)


class ReferenceResponse(BaseModel):
    images: list[str]
