"""Request and response shapes of the REST API (they are also its OpenAPI documentation)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from lookalike.feedback import MAX_FEEDBACK
from lookalike.index.validate import MAX_ID_BYTES
from lookalike.search import MAX_K, MAX_OFFSET

TierName = Literal["none", "similar", "same_item"]


def _id_within_limit(item_id: str) -> str:
    """The index contract's id limit (bytes of UTF-8, as every backend stores ids), not a character count."""
    if len(item_id.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise ValueError(f"an item id is at most {MAX_ID_BYTES} bytes of UTF-8")
    return item_id


ItemId = Annotated[str, Field(max_length=MAX_ID_BYTES), AfterValidator(_id_within_limit)]
"""An id a request names: a character is at least one byte, so the character bound never refuses a valid id."""


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
    positive: list[ItemId] = Field(
        default_factory=list, max_length=MAX_FEEDBACK, description="Ids of items to find more like"
    )
    negative: list[ItemId] = Field(
        default_factory=list, max_length=MAX_FEEDBACK, description="Ids of items to find less like"
    )
    min_tier: TierName | None = Field(
        None, description="Leave out results below this tier: similar (no unrelated items) or same_item"
    )
    dedupe: bool = Field(True, description="Fold near-identical items into one result (false: list every copy)")
    colour: float | None = Field(
        None, ge=0, le=1, description="How much colour matters: 0 shape only (any colour) to 1 colour dominates"
    )
    crop: list[float] | None = Field(
        None,
        min_length=4,
        max_length=4,
        description="Search with this region of the query picture: left, top, right, bottom as fractions 0-1",
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
    tier: TierName | None = None
    """How close a match this is, by the catalogue's calibration (None when the index is not calibrated)."""
    duplicates: list[str] = []
    """Ids of near-identical items folded into this result."""


class QueryInfo(BaseModel):
    type: Literal["upload", "base64", "url", "id", "ref", "feedback"]
    ref: str | None = None
    id: str | None = None
    url: str | None = None
    image_url: str | None = None
    crop: list[float] | None = None
    """The region searched (left, top, right, bottom, fractions of the picture), when one was given."""
    box: list[float] | None = None
    """Where the focus stage found the product in the picture (same form), when focus is on: a starting crop."""


class SearchResponse(BaseModel):
    model: str
    match: TierName | None = None
    """The best result's tier: same_item (the shop has this very item), similar, or none (no close match)."""
    query: QueryInfo
    took_ms: dict[str, float]
    results: list[Result]
    offset: int = 0
    next_offset: int | None = None
    """Where the next page starts, or None when this page was the last (fewer than k results)."""


class DuplicatePair(BaseModel):
    a: str
    b: str
    score: float


class DuplicateGroup(BaseModel):
    ids: list[str]
    """The items that are one picture, by id."""
    thumbnail_urls: list[str]
    pairs: list[DuplicatePair]
    """The pairs that were found (scores between the two items), best first."""


class Duplicates(BaseModel):
    groups: list[DuplicateGroup]
    total: int
    """Groups in the whole catalogue."""
    offset: int = 0
    next_offset: int | None = None


class ItemOut(BaseModel):
    id: str
    metadata: dict[str, Any]
    image_url: str
    thumbnail_url: str


class Range(BaseModel):
    min: float
    max: float


class Facets(BaseModel):
    fields: dict[str, dict[str, int]]
    """Field -> value -> items matching the other filters (every filter but this field's own)."""
    ranges: dict[str, Range] = {}
    """Numeric field -> lowest and highest value under the other filters (for a price range control)."""


class Display(BaseModel):
    """How the page shows an item: role -> metadata field (see ``lookalike display``)."""

    fields: dict[str, str]
    currency_code: str | None = None


class HnswInfo(BaseModel):
    m: int
    ef_construction: int
    ef_search: int


class IvfInfo(BaseModel):
    lists: int
    nprobe: int


class Info(BaseModel):
    """The index's description (``lookalike info --json``'s fields but ``location``: see
    :func:`lookalike.service.describe_index`), with the server's ``read_only`` and ``display``. Fields that
    apply to some indexes only (``hnsw``, ``ivf``, a lossy structure's ``encoding``...) and the backend's own
    counts (``vectors_in_graph``, ``dead_vectors``...) are present only where they apply."""

    model_config = ConfigDict(extra="allow")

    backend: str
    model: str
    dim: int
    metric: str
    kind: str
    hnsw: HnswInfo | None = None
    ivf: IvfInfo | None = None
    encoding: str | None = None
    """How a lossy search structure stores vectors (with ``pq_m``, ``pq_bits``, ``reduce_dim``, ``rerank``,
    ``rerank_encoding``); absent for float structures."""
    preprocessing: dict[str, Any] | None = None
    weights: str | None = None
    items: int
    metadata_fields: dict[str, int] = {}
    """Metadata field -> how many distinct values it has (counted up to 1,000)."""
    notes: list[str] = []
    """The names of the notes the index keeps (calibration, display, colour...)."""
    calibrated: bool = False
    """Whether results carry tiers (the page can then say "no close match" and "same item")."""
    colour_weight: float = 0.0
    """How much colour weighs in a search that does not say (``colour``): the catalogue's default."""
    focus: bool = False
    """Whether the focus stage finds the product in a query picture (its box comes back as ``query.box``)."""
    read_only: bool
    display: Display | None = None


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
