"""The REST API under /api, plus /health and /metrics."""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from lookalike.api.images import THUMBNAIL_SIZES, image_path, image_response
from lookalike.api.schemas import (
    Display as DisplayOut,
)
from lookalike.api.schemas import (
    DuplicateGroup,
    DuplicatePair,
    Duplicates,
    Facets,
    Info,
    ItemOut,
    Range,
    SearchRequest,
    SearchResponse,
)
from lookalike.api.service import (
    THUMBNAIL_SIZE,
    QueryType,
    ServerState,
    check_upload_size,
    decode_base64,
    embed_query_image,
    run_search,
    state_of,
)
from lookalike.api.uploads import forget_upload
from lookalike.confidence.tiers import TIERS
from lookalike.crop import parse_crop
from lookalike.errors import FilterError, ImageError, LookalikeError, NotFoundError
from lookalike.facets import shop_facets
from lookalike.images import image_format
from lookalike.index import Item, validate
from lookalike.search import MAX_K, MAX_OFFSET, EmbeddedQuery, Shaping
from lookalike.service import add_one_item, describe_index

router = APIRouter()
State = Annotated[ServerState, Depends(state_of)]

SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": SearchRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 10},
                        "filter": {"type": "string", "description": "a JSON object, as in the JSON body"},
                        "min_score": {"type": "number"},
                        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
                        "min_tier": {"type": "string", "enum": list(TIERS)},
                        "dedupe": {"type": "boolean", "default": True},
                        "colour": {"type": "number", "minimum": 0, "maximum": 1},
                        "crop": {"type": "string", "description": "left,top,right,bottom: fractions 0 to 1"},
                    },
                }
            },
        },
    }
}


@router.post("/api/search", response_model=SearchResponse, openapi_extra=SEARCH_BODY, tags=["search"])
async def search(request: Request, state: State) -> SearchResponse:
    """Find the k items most like a query: an uploaded file (multipart), or JSON with one of
    ``image_base64``, ``url``, ``id`` or ``ref``."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=len(SEARCH_FORM_FIELDS))
        _check_form_fields(form.keys(), SEARCH_FORM_FIELDS)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise LookalikeError("a multipart search needs the image in a file field named 'image'")
        data = await upload.read()
        k = _form_int(form.get("k"), "k", default=10)
        filter = _form_filter(form.get("filter"))
        min_score = _form_float(form.get("min_score"), "min_score")
        offset = _form_int(form.get("offset"), "offset", default=0, low=0, high=MAX_OFFSET)
        shaping = Shaping(
            dedupe=_form_bool(form.get("dedupe"), "dedupe", True),
            min_tier=_form_tier(form),
            colour=_form_float(form.get("colour"), "colour"),
        )
        crop = parse_crop(form.get("crop"))
        return await run_search(state, "upload", data, k, filter, min_score, offset, shaping=shaping, crop=crop)
    try:
        body = SearchRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    kind: QueryType
    value: Any
    if body.image_base64 is not None:
        kind, value = "base64", decode_base64(body.image_base64)
    elif body.url is not None:
        kind, value = "url", body.url
    elif body.id is not None:
        kind, value = "id", body.id
    elif body.ref is not None:
        kind, value = "ref", body.ref
    else:
        kind, value = "feedback", None
    shaping = Shaping(dedupe=body.dedupe, min_tier=body.min_tier, colour=body.colour)
    crop = parse_crop(body.crop)
    return await run_search(
        state,
        kind,
        value,
        body.k,
        body.filter,
        body.min_score,
        body.offset,
        body.positive,
        body.negative,
        shaping,
        crop,
    )


SEARCH_FORM_FIELDS = ("image", "k", "filter", "min_score", "offset", "min_tier", "dedupe", "colour", "crop")
ITEM_FORM_FIELDS = ("image", "id", "metadata")


def _check_form_fields(names: Any, known: tuple[str, ...]) -> None:
    """Unknown form fields are refused, as the JSON body refuses them: a typo must not be silently ignored."""
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise LookalikeError(f"unknown form field(s) {', '.join(map(repr, unknown))}; expected {', '.join(known)}")


def _form_int(raw: Any, name: str, default: int, low: int = 1, high: int = MAX_K) -> int:
    if raw in (None, ""):
        return default
    try:
        value = int(str(raw))
    except ValueError:
        raise LookalikeError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise LookalikeError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _form_bool(raw: Any, name: str, default: bool) -> bool:
    if raw in (None, ""):
        return default
    text = str(raw).lower()
    if text not in ("true", "false", "1", "0"):
        raise LookalikeError(f"{name} must be true or false, got {raw!r}")
    return text in ("true", "1")


def _form_tier(form: Any) -> str | None:
    raw = form.get("min_tier")
    if raw in (None, ""):
        return None
    if str(raw) not in TIERS:
        raise LookalikeError(f"min_tier must be one of {', '.join(TIERS)}, got {raw!r}")
    return str(raw)


def _form_float(raw: Any, name: str) -> float | None:
    if raw in (None, ""):
        return None
    try:
        return float(str(raw))
    except ValueError:
        raise LookalikeError(f"{name} must be a number, got {raw!r}") from None


def _form_filter(raw: Any, name: str = "filter", error: type[LookalikeError] = FilterError) -> dict[str, Any] | None:
    if raw in (None, ""):
        return None
    try:
        parsed = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise error(f"{name} must be a JSON object: {exc}") from None
    except RecursionError:  # json.loads recurses once per nesting level: '[[[[...' is not a JSONDecodeError
        raise error(f"{name} is nested too deeply") from None
    except ValueError as exc:  # Python refuses integers of more than 4,300 digits (int_max_str_digits)
        raise error(f"{name} is not usable JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise error(f"{name} must be a JSON object")
    return parsed


@router.get("/api/queries/{ref}/image", tags=["search"])
def query_image(ref: str, state: State) -> Response:
    """The image of an earlier uploaded query (so a shared search can show what it searched with)."""
    cached = state.queries.get(ref)
    if cached is None:
        raise NotFoundError("this search's photo is no longer on the server; upload it again")
    # The same guarded header parse as the search's decode (format whitelist): the bytes were accepted once,
    # so this cannot fail on them, and no other parser ever sees them.
    kind = image_format(cached.data).lower()
    return Response(cached.data, media_type=f"image/{kind}", headers={"Cache-Control": "private, max-age=3600"})


def _item_out(item: Item) -> ItemOut:
    return ItemOut(
        id=item.id,
        metadata=item.metadata,
        image_url=image_path(item.id),
        thumbnail_url=image_path(item.id, THUMBNAIL_SIZE),
    )


def _get_item(state: ServerState, item_id: str) -> Item:
    item = state.catalog.index.get(item_id)
    if item is None:
        raise NotFoundError(f"no item with id {item_id!r}")
    return item


@router.get("/api/items/{item_id:path}", response_model=ItemOut, tags=["items"])
def get_item(item_id: str, state: State) -> ItemOut:
    return _item_out(_get_item(state, item_id))


@router.get("/api/images/{item_id:path}", tags=["items"])
def get_image(
    item_id: str,
    request: Request,
    state: State,
    size: Annotated[int | None, Query(ge=THUMBNAIL_SIZES[0], le=THUMBNAIL_SIZES[1])] = None,
) -> Response:
    """The catalogue image, or a JPEG thumbnail fitting ``size`` pixels; images in object storage come back
    as a redirect to a signed link."""
    return image_response(_get_item(state, item_id), size, request, state.thumbnails)


@router.get("/api/facets", response_model=Facets, tags=["search"])
def facets(
    state: State,
    filter: Annotated[str | None, Query(description='The filter chosen so far, as JSON: {"label": "Skirt"}')] = None,
) -> Facets:
    """The filter choices to offer: metadata fields and their values, each value counted among the items the
    *other* chosen filters leave; numeric fields as ranges. Fields naming one item each (title, link, ids)
    and the values and fields the display hides are left out."""
    found = shop_facets(state.catalog.index, _form_filter(filter), state.display())
    return Facets(
        fields=found.fields, ranges={name: Range(min=low, max=high) for name, (low, high) in found.ranges.items()}
    )


@router.get("/api/duplicates", response_model=Duplicates, tags=["items"])
async def duplicates(
    state: State,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
) -> Duplicates:
    """Groups of near-identical catalogue images (copies, re-encodes, crops), largest first, a page at a time.
    Found once for the catalogue as it is (k-NN of every item, then verification) and remembered until an
    item is added or removed."""
    groups = await run_in_threadpool(state.duplicate_groups)
    page = groups[offset : offset + limit]
    return Duplicates(
        groups=[
            DuplicateGroup(
                ids=group.ids,
                thumbnail_urls=[image_path(item_id, THUMBNAIL_SIZE) for item_id in group.ids],
                pairs=[DuplicatePair(a=a, b=b, score=round(score, 4)) for a, b, score in group.pairs],
            )
            for group in page
        ],
        total=len(groups),
        offset=offset,
        next_offset=offset + limit if offset + limit < len(groups) else None,
    )


@router.get("/api/info", response_model=Info, response_model_exclude_unset=True, tags=["search"])
def info(state: State) -> Info:
    """What the index holds (the fields of ``lookalike info --json`` but the index's location), whether this
    server takes writes, and how the page should show items (its display: which field is the title...)."""
    display = state.display()
    return Info(
        **describe_index(state.catalog),
        read_only=state.settings.api_key is None,
        display=DisplayOut(fields=display.fields, currency_code=display.currency_code),
    )


def require_api_key(
    state: State,
    x_api_key: Annotated[str | None, Header()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> None:
    """Writes need the configured key (``X-API-Key`` or ``Authorization: Bearer``); no key, no writes."""
    expected = state.settings.api_key
    if expected is None:
        raise HTTPException(403, "this server is read-only: set LOOKALIKE_API_KEY to enable writes")
    given = x_api_key or (authorization or "").removeprefix("Bearer ").strip()
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(401, "a valid API key is required (X-API-Key header)")


@router.post(
    "/api/items", response_model=ItemOut, status_code=201, tags=["items"], dependencies=[Depends(require_api_key)]
)
async def add_item(request: Request, state: State) -> ItemOut:
    """Add or replace one item: multipart with ``image`` (file), optional ``id`` and ``metadata`` (JSON)."""
    form = await request.form(max_files=1, max_fields=8)
    _check_form_fields(form.keys(), ITEM_FORM_FIELDS)
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise LookalikeError("adding an item needs the image in a file field named 'image'")
    data = await upload.read()
    metadata = _form_filter(form.get("metadata"), "metadata", LookalikeError) or {}  # same JSON-object parsing
    item_id = _check_item_id(str(form.get("id") or "")) or None
    validate.check_metadata(item_id or "(new)", metadata)  # before the decode: a refused add costs nothing
    check_upload_size(data, state)
    kind = image_format(data).lower()  # a quick header check before anything is decoded or written
    query = await embed_query_image(state, data)
    return await run_in_threadpool(_add_item, state, data, kind, query, item_id, metadata)


def _check_item_id(item_id: str) -> str:
    """Ids are opaque strings (folder ingests make ``tops/item-05.jpg``; ``../x`` is harmless, as an id never
    becomes a file name) within the index contract's length; control characters could not be shown on one line
    or typed, so the API refuses them on top."""
    if not item_id:
        return item_id
    validate.check_id(item_id)
    bad = next((char for char in item_id if ord(char) < 32 or 127 <= ord(char) < 160), None)
    if bad is not None:
        raise LookalikeError(f"the id contains the control character {bad!r}")
    return item_id


def _add_item(
    state: ServerState, data: bytes, kind: str, query: EmbeddedQuery, item_id: str | None, metadata: dict[str, Any]
) -> ItemOut:
    """Write the item and its file (:func:`lookalike.service.add_one_item`), then let the server save."""
    item = add_one_item(state.catalog, data, kind, query, state.uploads_dir, item_id, metadata)
    state.after_write()
    return _item_out(item)


@router.delete("/api/items/{item_id:path}", tags=["items"], dependencies=[Depends(require_api_key)])
def delete_item(item_id: str, state: State) -> dict[str, str]:
    previous = state.catalog.index.get(item_id)
    if state.catalog.index.delete([item_id]) == 0:
        raise NotFoundError(f"no item with id {item_id!r}")
    forget_upload(state.uploads_dir, previous)
    state.after_write()
    return {"deleted": item_id}


@router.get("/health", tags=["operations"])
def health(state: State) -> dict[str, Any]:
    return {"status": "ok", "items": state.catalog.index.count(), "model": state.catalog.embedder.name}


@router.get("/metrics", tags=["operations"])
def metrics(state: State) -> Response:
    """Prometheus metrics: request counts and per-stage latency histograms (decode, embed, search)."""
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


__all__ = ["ImageError", "router"]
