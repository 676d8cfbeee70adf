"""Bytes in, an RGB picture out: decoding untrusted images safely, and the model's resize-and-crop.

Everything here treats input as hostile: sizes are checked from the header before any pixel is decoded (a
JPEG's at the DCT scale it will be decoded at, under a ceiling on its full size), only the formats product
photos actually come in are parsed, and every decoder failure becomes an
:class:`~lookalike.errors.ImageError` naming the problem. Before decoding, the memory the decode will hold is
estimated from the header and refused over a budget, and a JPEG's scans are counted (progressive scans each
cost a pass over the whole image); while decoding, every read Pillow makes checks a CPU-time deadline. Other
modules open images only through :func:`image_format`, :func:`image_size_of` and :func:`load_image`, which
all go through :func:`~lookalike.images.header._open`, so every open sees the same format whitelist.
Pillow's global state (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``) is read by Pillow but never changed
here, so this package behaves the same in every thread and whatever else the process does.

The package, one job a module: :mod:`~lookalike.images.decode` (:func:`load_image`, the one entry point),
:mod:`~lookalike.images.limits` (the defaults and why), :mod:`~lookalike.images.header` (format whitelist, header,
deadline), :mod:`~lookalike.images.jpeg` (scans and scale without decoding), :mod:`~lookalike.images.budget`
(memory estimates by format), :mod:`~lookalike.images.convert` (to 8-bit RGB) and :mod:`~lookalike.images.resize`
(the model's resize and crop).
"""

from __future__ import annotations

from lookalike.images.budget import _decode_bytes_needed as _decode_bytes_needed
from lookalike.images.convert import _BAND_SAMPLES as _BAND_SAMPLES
from lookalike.images.convert import _wide_to_8bit as _wide_to_8bit
from lookalike.images.convert import to_rgb
from lookalike.images.decode import load_image
from lookalike.images.header import _DecodeTimeout as _DecodeTimeout
from lookalike.images.header import _open as _open
from lookalike.images.header import image_format, image_size_of
from lookalike.images.jpeg import _jpeg_scale as _jpeg_scale
from lookalike.images.jpeg import _jpeg_scan_count as _jpeg_scan_count
from lookalike.images.limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_DECODE_SECONDS,
    DEFAULT_MAX_PIXELS,
    MAX_JPEG_COEFFICIENT_PASSES,
    MAX_JPEG_PIXELS,
    MAX_JPEG_SCANS,
)
from lookalike.images.resize import resize_and_crop

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DECODE_BYTES",
    "DEFAULT_MAX_DECODE_SECONDS",
    "DEFAULT_MAX_PIXELS",
    "MAX_JPEG_COEFFICIENT_PASSES",
    "MAX_JPEG_PIXELS",
    "MAX_JPEG_SCANS",
    "image_format",
    "image_size_of",
    "load_image",
    "resize_and_crop",
    "to_rgb",
]
