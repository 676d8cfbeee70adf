"""Opening an image: the format whitelist, the header, and the CPU-time deadline every read of the input checks.

Every open (:func:`image_format`, :func:`image_size_of` and :func:`~lookalike.images.load_image`) goes through
:func:`_open`, so every open sees the same whitelist; no pixel is decoded here."""

from __future__ import annotations

import functools
import io
import time

from PIL import ExifTags, Image, ImageFile

from lookalike.errors import ImageError
from lookalike.images.limits import DEFAULT_MAX_DECODE_SECONDS

# Only what product images come in. Anything else is refused as "not an image" rather than handed to a
# lenient or risky Pillow plugin: TGA has no magic number (random bytes can pass as one), XBM/XPM/PPM
# parse text, and EPS would run Ghostscript on the input.
_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "TIFF")

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


def _header_orientation(image: ImageFile.ImageFile) -> int:
    """The EXIF orientation known without decoding, 1 (upright) if none or unreadable."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1  # PngImageFile.getexif() would decode the whole image to look for a late eXIf chunk
    try:
        return int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # a broken EXIF block: load_image ignores it too
        return 1
