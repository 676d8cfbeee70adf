"""Any decoded Pillow mode to the 8-bit RGB picture a model takes: transparency onto white, 16/32-bit and float
grey to 8 bits, in row bands so that no conversion holds more than one extra full-size image."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from PIL import Image

from lookalike.errors import ImageError

# Samples converted at a time from 16/32-bit and float grey to 8-bit: row bands of about 1 MB, so the
# conversion's temporaries stay small however large the image.
_BAND_SAMPLES = 1 << 18

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB that looks like the picture, since models only take RGB.

    Transparent areas become white, as product photos are cut-outs meant for a white page. 16-bit grey
    ("I;16*") keeps its top 8 bits (divide by 256), exactly as the same photo saved at 8 bits would look;
    stretching each image to its own min..max would brighten dark photos and make equal pictures differ.
    "I" and "F" carry no fixed range, so :func:`_wide_to_8bit` guesses it from the largest value.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    try:
        if _is_wide_grey(mode):
            image = _grey_to_8bit(image)
        elif mode == "La":
            image = image.convert("LA")  # Pillow has no direct path from premultiplied La to RGB(A)
        if _has_alpha(image):
            # convert() also resolves palette and colour-key ("transparency") alpha; RGBA is used as it is,
            # since a copy of it would be one more full-size image in memory.
            rgba = image if image.mode == "RGBA" else image.convert("RGBA")
            white = Image.new("RGB", image.size, (255, 255, 255))
            white.paste(rgba, mask=rgba)
            return white
        return image.convert("RGB")
    except (ValueError, OSError, TypeError) as exc:
        raise ImageError(f"cannot convert image mode {mode} to RGB: {exc}") from exc


def _has_alpha(image: Image.Image) -> bool:
    """Whether any pixel may be see-through: alpha band, colour-key or palette transparency."""
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode.endswith("A")


def _is_wide_grey(mode: str) -> bool:
    """16-bit, 32-bit integer and float grey: the modes :func:`_grey_to_8bit` brings to 8 bits."""
    return mode.startswith("I;16") or mode in ("I", "F")


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit and float grey to "L". A grey value marked transparent (a PNG colour key) comes out white,
    which is what compositing it over white would give, so no alpha band is needed.

    Works in row bands into one preallocated 8-bit image: the only full-size allocation is the result.
    """
    width, height = image.size
    out = np.empty((height, width), dtype=np.uint8)
    transparent = image.info.get("transparency")
    keyed = isinstance(transparent, int) and not isinstance(transparent, bool)
    sixteen, is_float = image.mode.startswith("I;16"), image.mode == "F"
    top = low = 0.0
    if not sixteen:  # "I" and "F": the scale comes from the range of the whole image, a first pass
        top, low = _finite_range(np.asarray(band, dtype=np.float32) for _, band in _image_bands(image))
    for row, values in _image_bands(image):
        rows = out[row : row + values.shape[0]]
        if sixteen:
            rows[...] = values >> 8
        else:
            rows[...] = _scale_to_8bit(values.astype(np.float32), top, low, is_float=is_float)
        if keyed:
            rows[values == transparent] = 255
    return Image.fromarray(out)


def _wide_to_8bit(values: np.ndarray, *, is_float: bool) -> np.ndarray:
    """Scale "I"/"F" samples to 0..255 by the range the largest value suggests, then clip.

    Floats up to 1.0 are taken as normalised (x255); values up to 255 as 8-bit already; up to 65535 as
    16-bit samples in a 32-bit container (what older Pillow made of 16-bit PNGs), so divided by 256;
    anything larger is stretched from its min to its max, and when all finite values are that one number,
    to mid-grey (128). Negative values clip to black, NaN is black, +inf white.

    Row band by row band into a preallocated uint8 array, so a large image is not copied several times over.
    """
    out = np.empty(values.shape, dtype=np.uint8)
    top, low = _finite_range(band for _, band in _array_bands(values))
    for row, band in _array_bands(values):
        out[row : row + band.shape[0]] = _scale_to_8bit(band, top, low, is_float=is_float)
    return out


def _finite_range(bands: Iterator[np.ndarray]) -> tuple[float, float]:
    """(largest, smallest) finite value over all bands; (0.0, 0.0) when there is none."""
    top = low = None
    for band in bands:
        finite = band if np.isfinite(band).all() else band[np.isfinite(band)]
        if finite.size:
            band_top, band_low = float(finite.max()), float(finite.min())
            top = band_top if top is None else max(top, band_top)
            low = band_low if low is None else min(low, band_low)
    return (0.0, 0.0) if top is None or low is None else (top, low)


def _scale_to_8bit(values: np.ndarray, top: float, low: float, *, is_float: bool) -> np.ndarray:
    """One band of :func:`_wide_to_8bit`, given the whole image's finite range: 0..255 as floats."""
    if is_float and top <= 1.0:
        values = values * 255
    elif top > 65535 and top > low:
        values = (values - low) * (255 / (top - low))
    elif top > 65535:  # one value throughout: no range to stretch, so neither black nor white
        values = np.where(np.isfinite(values), 127.5, values)
    elif top > 255:
        values = values / 256
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(values), 0, 255)


def _band_rows(width: int) -> int:
    return max(1, _BAND_SAMPLES // max(1, width))


def _array_bands(values: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, view) of consecutive row bands of about ``_BAND_SAMPLES`` samples (1-D arrays: runs)."""
    rows = _band_rows(values[0].size if len(values) else 1)
    for row in range(0, len(values), rows):
        yield row, values[row : row + rows]


def _image_bands(image: Image.Image) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, samples) of consecutive row bands of a one-band image, each a small copy."""
    width, height = image.size
    rows = _band_rows(width)
    for row in range(0, height, rows):
        yield row, np.asarray(image.crop((0, row, width, min(row + rows, height))))
