"""Routes of the reference design's API, so its existing front end works against lookalike unchanged.

``POST /postImage {"base64img", "k"}`` and ``POST /postURL {"url", "k"}`` both answer
``{"images": [absolute image links]}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from lookalike.api.schemas import ReferenceImageRequest, ReferenceResponse, ReferenceURLRequest
from lookalike.api.service import ServerState, decode_base64, run_search, state_of

router = APIRouter(tags=["reference design"])


async def _links(request: Request, state: ServerState, kind: str, value: object, k: int) -> ReferenceResponse:
    response = await run_search(state, kind, value, k)  # type: ignore[arg-type]
    base = public_base(request, state)
    return ReferenceResponse(images=[base + result.image_url for result in response.results])


def public_base(request: Request, state: ServerState) -> str:
    """The configured public URL (``LOOKALIKE_PUBLIC_URL``) when set; else the address the request came to.
    The latter trusts the Host header (or, from trusted proxies only, X-Forwarded-*), which a client may set:
    a deployment that hands these links to others should set the public URL."""
    configured = state.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


@router.post("/postImage", response_model=ReferenceResponse)
async def post_image(body: ReferenceImageRequest, request: Request) -> ReferenceResponse:
    return await _links(request, await state_of(request), "base64", decode_base64(body.base64img), body.k)


@router.post("/postURL", response_model=ReferenceResponse)
async def post_url(body: ReferenceURLRequest, request: Request) -> ReferenceResponse:
    return await _links(request, await state_of(request), "url", body.url, body.k)
