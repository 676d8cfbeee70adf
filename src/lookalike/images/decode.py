"""The one guarded decode, :func:`load_image`: every limit checked from the header, then the pixels under a
CPU-time deadline, then EXIF orientation and the conversion to RGB."""

from __future__ import annotations

import contextlib
from typing import cast

from PIL import Image, ImageOps, JpegImagePlugin

from lookalike.errors import ImageError
from lookalike.images.budget import _decode_bytes_needed
from lookalike.images.convert import to_rgb
from lookalike.images.header import _DecodeTimeout, _open
from lookalike.images.jpeg import _jpeg_coefficients, _jpeg_scale, _jpeg_scan_count
from lookalike.images.limits import (
    _DECODE_BLOCK,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_DECODE_SECONDS,
    DEFAULT_MAX_PIXELS,
    MAX_JPEG_COEFFICIENT_PASSES,
    MAX_JPEG_PIXELS,
    MAX_JPEG_SCANS,
    _format_bytes,
)


def load_image(
    data: bytes,
    *,
    min_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    max_decode_seconds: float = DEFAULT_MAX_DECODE_SECONDS,
) -> Image.Image:
    """Decode bytes into an RGB PIL image ready for a model.

    ``min_side`` is the size the caller will shrink the shorter side to anyway (the model's resize): a JPEG
    is then decoded directly at the smallest 1/2, 1/4 or 1/8 scale that still covers it, which is several
    times faster than decoding full size and throwing most pixels away. Animated images give their first
    frame; EXIF orientation is applied, so the result is the picture as a person would see it.

    Refused before any pixel is decoded: more than ``max_bytes`` of input; more than ``max_pixels`` pixels
    to decode; a decode estimated to hold more than ``max_decode_bytes`` of memory (see
    :func:`_decode_bytes_needed`); and for a JPEG, more than :data:`MAX_JPEG_SCANS` scans or more than
    :data:`MAX_JPEG_COEFFICIENT_PASSES` coefficients for its scans to pass over.

    ``max_pixels`` counts the pixels the decoder produces. For most formats that is the whole picture, so it
    is checked against the header's size. A JPEG is decoded at its DCT scale instead (an 8000x6000 phone
    photo as 1000x750 for a ``min_side`` of 274), which costs little beyond reading its data: its drafted
    size is what ``max_pixels`` limits. The full size still decides the rest: a header may claim at most
    :data:`MAX_JPEG_PIXELS` (or ``max_pixels`` if that is more), whatever the scale, as a 13000x13000 header
    in a few hundred bytes is a bomb, not a photo; and a progressive JPEG's coefficients, which libjpeg keeps
    for the whole image at full size, count in the memory estimate and in the work of its scans: these refuse
    a progressive 12000x10000 (360 MB of coefficients) and a 48-megapixel JPEG of a hundred scans, at any
    scale. Other formats have no DCT scaling, and keep ``max_pixels`` as the limit on their header's size.

    Opening and decoding may take at most ``max_decode_seconds`` of the calling thread's CPU time; Pillow's
    reads check it, so a decoder busy in one call (WebP, AVIF and compressed TIFF decode all at once) is only
    stopped at its next read.
    """
    if len(data) > max_bytes:
        raise ImageError(f"file too large: {_format_bytes(len(data))} exceeds {_format_bytes(max_bytes)}")
    image = _open(data, max_decode_seconds)
    width, height = image.size
    is_jpeg = isinstance(image, JpegImagePlugin.JpegImageFile)  # MPO (a camera's multi-picture JPEG) too
    jpeg_ceiling = max(MAX_JPEG_PIXELS, max_pixels)
    if is_jpeg and width * height > jpeg_ceiling:
        raise ImageError(
            f"image too large: {width}x{height} pixels exceeds the limit of {jpeg_ceiling:,} for a JPEG at any scale"
        )
    if not is_jpeg and width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}")
    scans = 0
    try:
        if is_jpeg:
            scans = _jpeg_scan_count(data)
            if scans > MAX_JPEG_SCANS:
                raise ImageError(
                    f"JPEG has {scans:,} scans, more than the limit of {MAX_JPEG_SCANS}"
                    " (every progressive scan is another pass over the whole image)"
                )
            passes = scans * _jpeg_coefficients(cast(JpegImagePlugin.JpegImageFile, image), (width, height))
            if passes > MAX_JPEG_COEFFICIENT_PASSES:
                raise ImageError(
                    f"JPEG of {width}x{height} pixels has {scans} scans, which would pass over"
                    f" {passes / 1e9:.1f} billion coefficients, more than the limit of"
                    f" {MAX_JPEG_COEFFICIENT_PASSES / 1e9:g} billion (every scan is another pass over the whole image)"
                )
            if min_side is not None and min_side > 0:
                scale = _jpeg_scale(min(width, height), min_side)
                if scale > 1:
                    # draft() uses the largest of 8/4/2/1 not above min(width // w, height // h) for a
                    # request (w, h); asking for size // scale makes that exactly ``scale``, aspect kept.
                    image.draft("RGB", (width // scale, height // scale))
            decoded_width, decoded_height = image.size
            if decoded_width * decoded_height > max_pixels:
                scaled = "" if image.size == (width, height) else f", decoded as {decoded_width}x{decoded_height},"
                raise ImageError(
                    f"image too large: {width}x{height} pixels{scaled} exceeds the limit of {max_pixels:,}"
                )
        needed = _decode_bytes_needed(image, (width, height), scans, len(data))
        if needed > max_decode_bytes:
            coefficients = " (a progressive JPEG keeps its coefficients at full size)" if is_jpeg and scans > 1 else ""
            raise ImageError(
                f"image too large to decode: {width}x{height} {image.format} in mode {image.mode} would need"
                f" about {_format_bytes(needed)} of memory, more than the limit of {_format_bytes(max_decode_bytes)}"
                + coefficients
            )
        image.decodermaxblock = _DECODE_BLOCK  # read by ImageFile.load: small reads, frequent deadline checks
        image.load()
    except ImageError:
        raise
    except _DecodeTimeout:
        raise ImageError(f"decoding took longer than {max_decode_seconds:g} s of CPU time") from None
    except Image.DecompressionBombError as exc:  # Pillow checks GIF frame sizes itself while loading
        raise ImageError(f"image too large: {exc}") from exc
    except Exception as exc:  # decoders raise OSError, ValueError, SyntaxError, struct.error, EOFError...
        raise ImageError(f"truncated or corrupt {image.format or 'image'}: {exc}") from exc
    # A broken EXIF block should not cost us a good picture: browsers show such files unrotated too.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when there is nothing to turn
    return to_rgb(image)
