"""Bytes in, an RGB picture out: decoding untrusted images safely, and the model's resize-and-crop.

Everything here treats input as hostile: sizes are checked from the header before any pixel is decoded (a
JPEG's at the DCT scale it will be decoded at, under a ceiling on its full size), only the formats product
photos actually come in are parsed, and every decoder failure becomes an
:class:`~lookalike.errors.ImageError` naming the problem. Before decoding, the memory the decode will hold is
estimated from the header and refused over a budget, and a JPEG's scans are counted (progressive scans each
cost a pass over the whole image); while decoding, every read Pillow makes checks a CPU-time deadline. Other
modules open images only through :func:`image_format`, :func:`image_size_of` and :func:`load_image`, which
all go through :func:`_open`, so every open sees the same format whitelist. Pillow's global state
(``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``) is read by Pillow but never changed here, so this
module behaves the same in every thread and whatever else the process does.
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import math
import re
import time
from collections.abc import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, JpegImagePlugin

from lookalike.errors import ImageError

DEFAULT_MAX_BYTES: int = 30 * 1024 * 1024
# Pixels one decode may produce: the whole picture for most formats, and for a JPEG the DCT-scaled picture
# libjpeg actually makes (see MAX_JPEG_PIXELS). 40 megapixels of RGB take 160 MB in Pillow's layout.
DEFAULT_MAX_PIXELS: int = 40_000_000
# Pixels a JPEG's header may claim, whatever the scale it is decoded at. A JPEG drafted to 1/8 for the model
# costs little beyond reading its data (an 8000x6000 phone photo of 2.6 MB: 50 ms of CPU and 4 MB baseline;
# 0.35 s and 141 MB progressive, its coefficients; bench/bench_big_jpeg.py), so a JPEG is judged by the
# pixels decoded (max_pixels), the memory (DEFAULT_MAX_DECODE_BYTES, with a progressive JPEG's full-size
# coefficients) and the work of its scans (MAX_JPEG_COEFFICIENT_PASSES), not by its header's size. This
# ceiling is only for sizes no camera makes: 120 megapixels is above the largest full-resolution phone photo
# (108 MP, 12000x9000) and below Pillow's own guard, which refuses 179 megapixels (twice
# Image.MAX_IMAGE_PIXELS) while opening any file (a 200 MP sensor's 16320x12240 photos too) and warns with a
# DecompressionBombWarning from 89.5. A header-only 12000x10000 JPEG decodes at 1/8 in 25-35 ms and 8 MB.
MAX_JPEG_PIXELS: int = 120_000_000
# CPU seconds (of the decoding thread, so a busy server does not make good images fail) for opening and
# decoding one image. On an AMD EPYC server core a 40-megapixel baseline JPEG decodes in 0.3 s at full size
# (an 8000x6000 one at 1/8 in 0.05 s, progressive in 0.35 s) and a 47 MB 24-megapixel PNG in 0.8 s (the 30 MB
# input limit keeps real PNGs below that); the costliest JPEG the scan limits let through (100 full passes
# over 36 megapixels) takes 2.5-2.9 s.
DEFAULT_MAX_DECODE_SECONDS: float = 3.0

_MB = 1024 * 1024

# Bytes one decode may hold at its peak: the decoded image in Pillow's layout, the decoder's own buffers and
# the conversion to RGB. 192 MiB lets an ordinary 40-megapixel RGB JPEG or PNG through at full size (Pillow
# keeps RGB in 4 bytes a pixel: 157 MiB with the decoder's state), any baseline JPEG drafted to 1/8 for the
# model, and a progressive one of up to about 64 megapixels in 4:2:0 (an 8000x6000 one: 144 MiB, nearly all
# libjpeg's coefficients, which stay at full size); it refuses a 40-megapixel float TIFF (355 MiB: 4 bytes a
# sample, then 8-bit grey, then RGB), RGBA PNG (309 MiB with its white background) or progressive JPEG at full
# size (271 MiB with libjpeg's coefficients), and WebP above about 12 megapixels (libwebp's buffers take 16
# bytes a pixel). A handful of requests at once then stays within a gigabyte.
DEFAULT_MAX_DECODE_BYTES: int = 192 * _MB

# Scans a JPEG may have. Each progressive scan is one more pass over the image's whole coefficient buffer, so
# a few thousand tiny scans of a flat 36-megapixel picture (387 KB) cost over a minute of CPU. Encoders write
# 1 scan for baseline and about 10 for progressive (libjpeg's default script: 10 for colour, 6 for grey;
# custom scripts rarely pass 20). libtiff refuses JPEG data with more than 100 scans
# (LIBTIFF_JPEG_MAX_ALLOWED_SCAN_NUMBER), NVIDIA nvImageCodec more than 256, and libjpeg-turbo's djpeg offers
# -maxscans for the same attack; 100 is libtiff's choice, far above any real encoder.
MAX_JPEG_SCANS: int = 100
# Coefficients all of a JPEG's scans may pass over together: scans x the coefficients of the whole image, at
# full size (DCT scaling only makes the last step, the inverse DCT, cheaper). 100 scans of 40 megapixels of
# grey: the costliest JPEG the scan limit let through while every JPEG had to fit in max_pixels at full size
# (about 3 s of CPU, the decode deadline), so that larger JPEGs do not raise that worst case. Real files stay
# far below it: a progressive 8000x6000 4:2:0 photo has 10 scans of 72 million coefficients, 0.7 billion.
MAX_JPEG_COEFFICIENT_PASSES: int = MAX_JPEG_SCANS * 40_000_000
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

# Pillow hands decoders this many bytes a read (instead of 64 KB), so the deadline is looked at often: every
# few tens of progressive scans at worst, and the reads cost nothing next to decoding.
_DECODE_BLOCK = 4096

# What any decode holds beside its pixels (decoder state, row buffers, Python objects): measured 3-4 MiB.
_DECODE_OVERHEAD = 4 * _MB

# Samples converted at a time from 16/32-bit and float grey to 8-bit: row bands of about 1 MB, so the
# conversion's temporaries stay small however large the image.
_BAND_SAMPLES = 1 << 18

# Only what product images come in. Anything else is refused as "not an image" rather than handed to a
# lenient or risky Pillow plugin: TGA has no magic number (random bytes can pass as one), XBM/XPM/PPM
# parse text, and EPS would run Ghostscript on the input.
_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "TIFF")

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})

# Signatures of the allowed formats: a file starting with one that Pillow still cannot identify is a broken
# file of that format, which says more than "unrecognised".
_MAGIC_NUMBERS = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# Orientations 5-8 turn the picture by 90 degrees, so width and height swap on display.
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


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
            passes = scans * _jpeg_coefficients(image, (width, height))
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


def image_format(data: bytes) -> str:
    """Pillow's name for the format of ``data`` ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "TIFF", or "MPO"
    for a multi-picture JPEG), read from the header only, exactly as :func:`load_image` identifies it.

    Only the allowed formats are tried: a file that is a valid TIFF but whose first bytes also parse as some
    other Pillow format (an "IM" header, say, which an unrestricted ``Image.open`` tries first) is a TIFF here
    as in :func:`load_image`. Raises :class:`~lookalike.errors.ImageError` for anything else. Says nothing
    about whether the pixel data decodes: that takes :func:`load_image`.
    """
    image = _open(data)
    return image.format or "unknown"


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


def resize_and_crop(image: Image.Image, resize: int, crop: int) -> np.ndarray:
    """The ImageNet eval transform: shorter side to ``resize``, centre ``crop`` x ``crop``, as uint8 HWC.

    The geometry is torchvision's ``Resize(resize)`` + ``CenterCrop(crop)``, but only the cropped region
    is resampled (``resize(box=...)`` maps output pixels exactly as a full resize would), so a 1000x3
    strip does not first become an 85333x256 image. ``reducing_gap`` lets Pillow shrink big images by
    fast integer box-averaging first, indistinguishable from a full bilinear pass at a gap of 3.
    """
    if not 0 < crop <= resize:
        raise ValueError(f"need 0 < crop <= resize, got resize={resize}, crop={crop}")
    image = to_rgb(image)
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels: {width}x{height}")
    if width <= height:
        new_width, new_height = resize, int(resize * height / width)
    else:
        new_width, new_height = int(resize * width / height), resize
    left = round((new_width - crop) / 2)
    top = round((new_height - crop) / 2)
    x_scale, y_scale = width / new_width, height / new_height
    box = (left * x_scale, top * y_scale, (left + crop) * x_scale, (top + crop) * y_scale)
    out = image.resize((crop, crop), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
    return np.array(out, dtype=np.uint8)  # a fresh, writable, C-contiguous (crop, crop, 3) copy


def image_size_of(data: bytes) -> tuple[int, int]:
    """(width, height) as :func:`load_image` would return it at full size, read from the header only.

    Cheap enough to call on every upload to reject or report before decoding. EXIF orientations that turn
    the picture swap the two, when the header carries the EXIF (a PNG's eXIf chunk after the pixel data
    is not looked for: finding it would mean decoding).
    """
    image = _open(data)
    width, height = image.size
    return (height, width) if _header_orientation(image) in _SWAPPING_ORIENTATIONS else (width, height)


@functools.cache
def _formats() -> tuple[str, ...]:
    """The allowed formats this Pillow build can open (AVIF support is optional)."""
    Image.init()
    return tuple(name for name in _FORMATS if name in Image.OPEN)


class _DecodeTimeout(Exception):
    """A decode used up its CPU time. Raised from :class:`_DeadlineReader` inside Pillow, which lets it through:
    ``ImageFile.load`` only turns ``IndexError`` and ``struct.error`` from a read into "truncated", and
    ``Image.open`` only skips to the next format on ``SyntaxError``, ``IndexError``, ``TypeError`` and
    ``struct.error`` (so this derives from none of them)."""


class _DeadlineReader(io.BytesIO):
    """The input as a file whose every read first checks a CPU-time deadline (``time.thread_time``: the
    decoding thread's own CPU, so other requests keeping the machine busy do not count against it)."""

    def __init__(self, data: bytes, seconds: float) -> None:
        super().__init__(data)  # shares ``data``'s buffer until written to: no copy
        self._deadline = time.thread_time() + seconds

    def _check(self) -> None:
        if time.thread_time() > self._deadline:
            raise _DecodeTimeout

    def read(self, size: int | None = -1, /) -> bytes:
        self._check()
        return super().read(size)

    def getvalue(self) -> bytes:  # Pillow's libtiff path takes the whole file in one call
        self._check()
        return super().getvalue()


def _open(data: bytes, max_decode_seconds: float = DEFAULT_MAX_DECODE_SECONDS) -> ImageFile.ImageFile:
    """Identify the format and read the header; no pixels are decoded yet. The file the image reads from keeps
    checking the deadline of ``max_decode_seconds`` from now, through :func:`load_image`'s decode."""
    if not data:
        raise ImageError("empty input (0 bytes)")
    try:
        return Image.open(_DeadlineReader(data, max_decode_seconds), formats=_formats())
    except _DecodeTimeout:
        raise ImageError(f"reading the image header took longer than {max_decode_seconds:g} s of CPU time") from None
    except Image.UnidentifiedImageError as exc:
        raise ImageError(f"not an image ({_what_it_looks_like(data)})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own guard (more than twice its MAX_IMAGE_PIXELS) fires inside open(), before we see
        # the size; the warning only arrives here if the warnings filter turns it into an error.
        raise ImageError(f"image too large: {exc}") from exc
    except Exception as exc:  # plugins raise OSError, ValueError, SyntaxError... on broken headers
        raise ImageError(f"truncated, corrupt or unsupported image: {exc}") from exc


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


def _what_it_looks_like(data: bytes) -> str:
    """A hint for the usual suspects: a web page or document fetched instead of a picture, an iPhone HEIC."""
    head = data[:64].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if head.startswith(b"%pdf"):
        return "looks like a PDF document"
    if head.startswith(b"<"):
        return "looks like HTML, XML or SVG text"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"mif1", b"msf1"):
        return "HEIC/HEIF is not supported"
    for magic, name in _MAGIC_NUMBERS:
        if data.startswith(magic):
            return f"starts like a {name} file, but its header is truncated or corrupt"
    return "unrecognised format"


def _jpeg_scale(short_side: int, min_side: int) -> int:
    """The largest JPEG DCT scale divisor (8, 4, 2 or 1) that keeps the shorter side >= ``min_side``.

    libjpeg rounds scaled sizes up, so the decoded shorter side is ``ceil(short_side / scale)``.
    """
    return next(s for s in (8, 4, 2, 1) if -(-short_side // s) >= min_side or s == 1)


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


def _stored_pixel_bytes(mode: str) -> int:
    """Bytes a pixel of ``mode`` takes in Pillow's memory: 1 for "1", "L", "P", 2 for 16-bit grey, and 4 for
    everything else (RGB is stored padded to 4 bytes, like RGBA, CMYK, LA, "I" and "F")."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def _decode_bytes_needed(image: ImageFile.ImageFile, full_size: tuple[int, int], scans: int, data_len: int) -> int:
    """About how many bytes :func:`load_image` will hold at its peak to decode ``image`` (opened, and for a
    JPEG already draft-scaled), judged from the header alone.

    The decoded image in Pillow's layout (the draft-scaled size for a JPEG), plus the largest of what comes
    while or after it exists: the decoder's own buffers (for a JPEG of more than one scan, libjpeg's
    coefficients of the whole image at full resolution, 2 bytes a sample of every component, whatever the
    DCT scaling; for TIFF, libtiff's strip or tile buffer, or the largest raw strip read; WebP and AVIF
    decode to separate buffers first), an EXIF turn (a second copy) and the conversion to RGB (an 8-bit grey
    then RGB for 16/32-bit and float grey, RGB and a white background for transparency, RGB otherwise), and
    a few megabytes for the decoder's state. Checked against the peak resident memory of real decodes of
    every format and mode (10 megapixels each): within 10%, and 25% over for AVIF.
    """
    width, height = image.size
    pixels = width * height
    decoded = pixels * _stored_pixel_bytes(image.mode)
    decoding = _decoder_bytes(image, full_size, scans, data_len)
    turning = decoded if _header_orientation(image) in range(2, 9) else 0
    return _DECODE_OVERHEAD + decoded + max(decoding, turning, _to_rgb_bytes(image, pixels))


def _decoder_bytes(image: ImageFile.ImageFile, full_size: tuple[int, int], scans: int, data_len: int) -> int:
    """The decoder's working memory beside the decoded image (see :func:`_decode_bytes_needed`)."""
    width, height = image.size
    if isinstance(image, JpegImagePlugin.JpegImageFile):
        return _jpeg_coefficient_bytes(image, full_size) if scans > 1 else 0
    if image.format == "WEBP":
        # A copy of the file, libwebp's canvas and its previous frame (4 bytes a pixel each), and the frame
        # copied out to Python before Pillow copies it into the image (measured: 16-17 bytes a pixel in all).
        return 3 * 4 * width * height + data_len
    if image.format == "AVIF":
        return 2 * 4 * width * height + data_len  # a copy of the file, libavif's planes, the RGB copied out
    if image.format == "TIFF" and getattr(image, "use_load_libtiff", False):
        return _tiff_buffer_bytes(image)  # libtiff reads the compressed data in place
    if image.format == "TIFF":
        return 2 * _tiff_read_bytes(image, data_len)
    return 0


def _jpeg_coefficient_bytes(image: JpegImagePlugin.JpegImageFile, full_size: tuple[int, int]) -> int:
    """libjpeg's whole-image coefficient buffer for a multi-scan JPEG: two bytes a coefficient."""
    return 2 * _jpeg_coefficients(image, full_size)


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


def _tiff_buffer_bytes(image: ImageFile.ImageFile) -> int:
    """The strip or tile buffer Pillow's libtiff decoder allocates: one strip (or tile) in the file's own
    sample size, or 4 bytes a pixel when libtiff converts it to RGBA (YCbCr); the whole image when the file
    says nothing."""
    width, height = image.size
    tags = getattr(image, "tag_v2", {})
    bits = tags.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    samples = int(tags.get(277, len(bits)) or 1)
    pixel_bits = sum(int(b) for b in bits) if len(bits) > 1 else int(bits[0] or 8) * samples
    pixel_bytes = max(1, -(-pixel_bits // 8))
    if tags.get(262) == 6:  # YCbCr: read as RGBA
        pixel_bytes = max(pixel_bytes, 4)
    if 322 in tags and 323 in tags:
        tile_width, tile_height = int(tags[322] or width), int(tags[323] or height)
        return tile_width * tile_height * pixel_bytes
    rows = int(tags.get(278, height) or height)
    return min(rows, height) * width * pixel_bytes


def _tiff_read_bytes(image: ImageFile.ImageFile, data_len: int) -> int:
    """The largest read of an uncompressed TIFF: Pillow reads each strip whole, as far as the next one starts
    (twice that is held for a moment, as the bytes are joined)."""
    offsets = sorted(tile.offset for tile in image.tile)
    gaps = [after - before for before, after in itertools.pairwise(offsets)]
    return min(data_len, max([_DECODE_BLOCK, *gaps]))


def _to_rgb_bytes(image: Image.Image, pixels: int) -> int:
    """What :func:`to_rgb` allocates beside the image it converts."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return 0
    if _is_wide_grey(mode):
        return pixels * (1 + 4) + 8 * 4 * _BAND_SAMPLES  # the 8-bit grey and its RGB; a few float bands
    if mode == "La":
        return pixels * 4 * 3  # LA, RGBA and the white background
    if _has_alpha(image):
        return pixels * 4 * (1 if mode == "RGBA" else 2)  # (RGBA and) the white background
    return pixels * 4


def _header_orientation(image: ImageFile.ImageFile) -> int:
    """The EXIF orientation known without decoding, 1 (upright) if none or unreadable."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # PngImageFile.getexif() would decode the whole image to look for a late eXIf chunk
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # a broken EXIF block: load_image ignores it too
        return 1


def _format_bytes(size: int) -> str:
    """31.2 MB, 30 MB, or bytes below a megabyte, for error messages."""
    if size < _MB:
        return f"{size:,} bytes"
    return f"{size / _MB:.1f}".removesuffix(".0") + " MB"
