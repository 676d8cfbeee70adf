"""Routes of the reference design's API, so its existing front end works against lookalike unchanged.

``POST /postImage {"base64img", "k"}`` and ``POST /postURL {"url", "k"}`` both answer
``{"images": [absolute image links]}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from lookalike.api.schemas import ReferenceImageRequest, ReferenceResponse, ReferenceURLRequest
from lookalike.api.service import ServerState, decode_base64, run_search, state_of

router = APIRouter(tags=["reference design"])


def _links(request: Request, state: ServerState, kind: str, value: object, k: int) -> ReferenceResponse:
    response = run_search(state, kind, value, k)  # type: ignore[arg-type]
    base = str(request.base_url).rstrip("/")
    return ReferenceResponse(images=[base + result.image_url for result in response.results])


@router.post("/postImage", response_model=ReferenceResponse)
def post_image(body: ReferenceImageRequest, request: Request) -> ReferenceResponse:
    return _links(request, state_of(request), "base64", decode_base64(body.base64img), body.k)


@router.post("/postURL", response_model=ReferenceResponse)
def post_url(body: ReferenceURLRequest, request: Request) -> ReferenceResponse:
    return _links(request, state_of(request), "url", body.url, body.k)
