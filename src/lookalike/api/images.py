"""Serving catalogue images: the file itself, a cached thumbnail, or a (signed) link to where it lives."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from lookalike.errors import NotFoundError
from lookalike.images import load_image
from lookalike.index import Item

CACHE_CONTROL = "public, max-age=86400"
THUMBNAIL_SIZES = (64, 1024)
SIGNED_LINK_SECONDS = 300


def image_path(item_id: str, size: int | None = None) -> str:
    """The API link of an item's image (ids may hold any character, so they are percent-encoded)."""
    link = f"/api/images/{quote(item_id, safe='')}"
    return f"{link}?size={size}" if size else link


class ThumbnailCache:
    """Recently made thumbnails, bounded by total bytes."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str | None, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get_or_make(self, item: Item, size: int, read: Callable[[], bytes]) -> bytes:
        key = (item.id, item.content_hash, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = load_image(read(), min_side=size)
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85, optimize=True)
        data = buffer.getvalue()
        with self._lock:
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes and self._items:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= len(evicted)
        return data


def _is_local(location: str) -> bool:
    return "://" not in location or location.startswith("file://")


def _local_path(location: str) -> Path:
    return Path(location.removeprefix("file://"))


def read_item_image(item: Item) -> bytes:
    """The bytes of an item's picture from a file or object storage (not a web link: see the caller)."""
    location = item.location
    if not location:
        raise NotFoundError(f"item {item.id!r} has no image location")
    if _is_local(location):
        path = _local_path(location)
        if not path.is_file():
            raise NotFoundError(f"the image of item {item.id!r} is no longer at its location")
        return path.read_bytes()
    import fsspec

    filesystem, path = fsspec.core.url_to_fs(location)
    return bytes(filesystem.cat_file(path))


def image_response(item: Item, size: int | None, request: Request, thumbnails: ThumbnailCache) -> Response:
    """The response for ``GET /api/images/{id}``."""
    location = item.location
    if not location:
        raise NotFoundError(f"item {item.id!r} has no image location")
    etag = f'"{item.content_hash or "x"}-{size or 0}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": CACHE_CONTROL})
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if location.startswith(("http://", "https://")):
        return RedirectResponse(location, status_code=307)
    if _is_local(location):
        path = _local_path(location)
        if not path.is_file():
            raise NotFoundError(f"the image of item {item.id!r} is no longer at its location")
        if size is None:
            return FileResponse(path, headers=headers)
        return Response(thumbnails.get_or_make(item, size, path.read_bytes), media_type="image/jpeg", headers=headers)
    import fsspec

    filesystem, path = fsspec.core.url_to_fs(location)
    if size is None:
        try:
            return RedirectResponse(filesystem.sign(path, expiration=SIGNED_LINK_SECONDS), status_code=307)
        except NotImplementedError:
            return Response(filesystem.cat_file(path), media_type="application/octet-stream", headers=headers)
    data = thumbnails.get_or_make(item, size, lambda: filesystem.cat_file(path))
    return Response(data, media_type="image/jpeg", headers=headers)
