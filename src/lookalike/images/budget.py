"""The memory a decode will hold at its peak, estimated by format from the header alone, before any pixel is
decoded: :func:`~lookalike.images.load_image` refuses a decode over its budget."""

from __future__ import annotations

import itertools

from PIL import Image, ImageFile, JpegImagePlugin

from lookalike.images.convert import _BAND_SAMPLES, _has_alpha, _is_wide_grey
from lookalike.images.header import _header_orientation
from lookalike.images.jpeg import _jpeg_coefficients
from lookalike.images.limits import _DECODE_BLOCK, _MB

# What any decode holds beside its pixels (decoder state, row buffers, Python objects): measured 3-4 MiB.
_DECODE_OVERHEAD = 4 * _MB


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
