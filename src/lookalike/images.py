"""Bytes in, an RGB picture out: decoding untrusted images safely, and the model's resize-and-crop.

Everything here treats input as hostile: sizes are checked from the header before any pixel is decoded,
only the formats product photos actually come in are parsed, and every decoder failure becomes an
:class:`~lookalike.errors.ImageError` naming the problem. Pillow's global state
(``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``) is read by Pillow but never changed here, so this
module behaves the same in every thread and whatever else the process does.
"""

from __future__ import annotations

import contextlib
import functools
import io

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, JpegImagePlugin

from lookalike.errors import ImageError

DEFAULT_MAX_BYTES: int = 30 * 1024 * 1024
DEFAULT_MAX_PIXELS: int = 40_000_000

_MB = 1024 * 1024

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
) -> Image.Image:
    """Decode bytes into an RGB PIL image ready for a model.

    ``min_side`` is the size the caller will shrink the shorter side to anyway (the model's resize): a JPEG
    is then decoded directly at the smallest 1/2, 1/4 or 1/8 scale that still covers it, which is several
    times faster than decoding full size and throwing most pixels away. Animated images give their first
    frame; EXIF orientation is applied, so the result is the picture as a person would see it.
    """
    if len(data) > max_bytes:
        raise ImageError(f"file too large: {_format_bytes(len(data))} exceeds {_format_bytes(max_bytes)}")
    image = _open(data)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels:,}")
    try:
        if min_side is not None and min_side > 0 and isinstance(image, JpegImagePlugin.JpegImageFile):
            scale = _jpeg_scale(min(width, height), min_side)
            if scale > 1:
                # draft() uses the largest of 8/4/2/1 not above min(width // w, height // h) for a
                # request (w, h); asking for size // scale makes that exactly ``scale``, aspect kept.
                image.draft("RGB", (width // scale, height // scale))
        image.load()
    except Image.DecompressionBombError as exc:  # Pillow checks GIF frame sizes itself while loading
        raise ImageError(f"image too large: {exc}") from exc
    except Exception as exc:  # decoders raise OSError, ValueError, SyntaxError, struct.error, EOFError...
        raise ImageError(f"truncated or corrupt {image.format or 'image'}: {exc}") from exc
    # A broken EXIF block should not cost us a good picture: browsers show such files unrotated too.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)  # in place: no copy when there is nothing to turn
    return to_rgb(image)


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
        if mode.startswith("I;16") or mode in ("I", "F"):
            image = _grey_to_8bit(image)
        elif mode == "La":
            image = image.convert("LA")  # Pillow has no direct path from premultiplied La to RGB(A)
        if _has_alpha(image):
            rgba = image.convert("RGBA")  # also resolves palette and colour-key ("transparency") alpha
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


def _open(data: bytes) -> ImageFile.ImageFile:
    """Identify the format and read the header; no pixels are decoded yet."""
    if not data:
        raise ImageError("empty input (0 bytes)")
    try:
        return Image.open(io.BytesIO(data), formats=_formats())
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


def _grey_to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit and float grey to "L" (or "LA" when a grey value is marked transparent)."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        grey = (values >> 8).astype(np.uint8)
    else:
        grey = _wide_to_8bit(values.astype(np.float32), is_float=image.mode == "F")
    result = Image.fromarray(grey)
    transparent = image.info.get("transparency")
    if isinstance(transparent, int) and not isinstance(transparent, bool):
        result.putalpha(Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8)))
    return result


def _wide_to_8bit(values: np.ndarray, *, is_float: bool) -> np.ndarray:
    """Scale "I"/"F" samples to 0..255 by the range the largest value suggests, then clip.

    Floats up to 1.0 are taken as normalised (x255); values up to 255 as 8-bit already; up to 65535 as
    16-bit samples in a 32-bit container (what older Pillow made of 16-bit PNGs), so divided by 256;
    anything larger is stretched from its min to its max. Negative values clip to black, NaN is black.
    """
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    if is_float and top <= 1.0:
        values = values * 255
    elif top > 65535:
        low = float(finite.min())
        values = (values - low) * (255 / (top - low))
    elif top > 255:
        values = values / 256
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


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
