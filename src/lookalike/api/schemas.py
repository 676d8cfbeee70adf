"""Request and response shapes of the REST API (they are also its OpenAPI documentation)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_K = 100


class SearchRequest(BaseModel):
    """A JSON search: exactly one of ``image_base64``, ``url``, ``id`` or ``ref``."""

    model_config = ConfigDict(extra="forbid")

    image_base64: str | None = Field(None, description="The query image, base64 (a data: URL prefix is allowed)")
    url: str | None = Field(None, description="An http(s) URL of the query image")
    id: str | None = Field(None, description="An indexed item: find items like it")
    ref: str | None = Field(None, description="The ref of an earlier uploaded query (repeat that search)")
    k: int = Field(10, ge=1, le=MAX_K)
    filter: dict[str, Any] | None = Field(None, description='e.g. {"label": ["Dress", "Skirt"], "price": {"lt": 50}}')
    min_score: float | None = Field(None, description="Drop results scoring below this")

    @model_validator(mode="after")
    def one_query(self) -> SearchRequest:
        given = [name for name in ("image_base64", "url", "id", "ref") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of image_base64, url, id, ref (got {', '.join(given) or 'none'})")
        return self


class Result(BaseModel):
    id: str
    score: float
    distance: float
    metadata: dict[str, Any]
    image_url: str
    thumbnail_url: str


class QueryInfo(BaseModel):
    type: Literal["upload", "base64", "url", "id", "ref"]
    ref: str | None = None
    id: str | None = None
    url: str | None = None
    image_url: str | None = None


class SearchResponse(BaseModel):
    model: str
    query: QueryInfo
    took_ms: dict[str, float]
    results: list[Result]


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
