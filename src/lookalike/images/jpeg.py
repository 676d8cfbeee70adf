"""What a JPEG will cost, read from its bytes without decoding: its scans, its DCT scale, its coefficients."""

from __future__ import annotations

import math
import re

from PIL import JpegImagePlugin

from lookalike.errors import ImageError

# Markers the scan counter walks before giving up (one Python step each): real files have tens, a few hundred
# with a large ICC profile or with 100 scans and their tables; millions of empty segments would be a way to
# make the walk itself slow.
_MAX_JPEG_MARKERS = 10_000

# A JPEG marker outside a segment's payload: 0xFF then a code that is not a stuffed zero (0x00), a restart
# (RST0-7, inside entropy-coded data), TEM (0x01, no payload) or a fill byte (0xFF). Searching with a compiled
# pattern skips entropy-coded data in C, in linear time: a Python step per 0xFF 0x00 pair could itself take
# seconds on a 30 MB file of them.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")

_JPEG_SOS, _JPEG_EOI = 0xDA, 0xD9


def _jpeg_scan_count(data: bytes) -> int:
    """How many scans (SOS markers) libjpeg will read from the JPEG ``data``, found without decoding.

    Walks the markers from after SOI to the first EOI as libjpeg's marker reader does: a segment's payload
    (its 2-byte length says how long) is skipped, and so is entropy-coded data, by searching for the next
    0xFF that is neither a stuffed 0x00 nor a restart marker. Stray bytes between segments are skipped as
    libjpeg skips them. Linear time: the search runs in C. A file with more than ``_MAX_JPEG_MARKERS``
    markers is refused rather than walked to the end.
    """
    scans = markers = 0
    at = 2
    while (found := _JPEG_MARKER.search(data, at)) is not None:
        code = data[found.start() + 1]
        if code == _JPEG_EOI:
            break
        markers += 1
        if markers > _MAX_JPEG_MARKERS:
            raise ImageError(f"JPEG has more than {_MAX_JPEG_MARKERS:,} markers")
        at = found.end()
        if code == 0xD8:  # a second SOI has no payload (libjpeg calls it an error)
            continue
        if code == _JPEG_SOS:
            scans += 1
        at += int.from_bytes(data[at : at + 2], "big")  # the length counts itself; for SOS, the scan header
    return scans


def _jpeg_scale(short_side: int, min_side: int) -> int:
    """The largest JPEG DCT scale divisor (8, 4, 2 or 1) that keeps the shorter side >= ``min_side``.

    libjpeg rounds scaled sizes up, so the decoded shorter side is ``ceil(short_side / scale)``.
    """
    return next(s for s in (8, 4, 2, 1) if -(-short_side // s) >= min_side or s == 1)


def _jpeg_coefficients(image: JpegImagePlugin.JpegImageFile, full_size: tuple[int, int]) -> int:
    """The DCT coefficients of a whole JPEG: for every component, its 8x8 blocks (rounded up to whole MCUs)
    of 64, at the full (not DCT-scaled) size."""
    width, height = full_size
    layers = getattr(image, "layer", None) or [(0, 1, 1, 0)] * len(image.getbands())
    h_max = max(max(1, layer[1]) for layer in layers)
    v_max = max(max(1, layer[2]) for layer in layers)
    total = 0
    for _, h, v, _ in layers:
        h, v = max(1, h), max(1, v)
        blocks_wide = math.ceil(math.ceil(width * h / h_max) / 8)
        blocks_high = math.ceil(math.ceil(height * v / v_max) / 8)
        total += (-(-blocks_wide // h) * h) * (-(-blocks_high // v) * v) * 64
    return total
