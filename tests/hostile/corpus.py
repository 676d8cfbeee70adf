"""The hostile-input corpus: every file a client might send as an image, and what lookalike must make of it.

Two kinds of entry, each with its expectation:

* **accepted**: valid but unusual images (CMYK, 16-bit, palette with transparency, animated, EXIF-rotated,
  odd formats, a wrong file extension...). They must decode, and a search with one must find the catalogue
  item it depicts first (``finds``), which proves the picture was decoded as a person sees it.
* **refused**: broken or dangerous input (truncated, corrupt, bombs, enormous dimensions, documents posing
  as images, unsupported formats). They must be refused with a clear error (``status``/``code``/``words``)
  without decoding more than the header, and change nothing.

Small real-world-shaped files are committed in ``files/`` (``python tests/hostile/corpus.py --write``
regenerates them); the large ones (bombs with real pixel data, huge
base64) are made at test time by the functions here, so no megabytes are committed. The fuzzers in
``fuzz/`` are seeded from :func:`image_cases` too, and what they find lands in ``found/``.
"""

from __future__ import annotations

import functools
import io
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
FOUND = HERE / "found"
REFERENCE_DIR = FILES / "ref"

# The catalogue items the accepted cases depict (committed as PNG, so they are exact).
PHOTO_A = "ref/photo-a.png"
PHOTO_B = "ref/photo-b.png"
GREY = "ref/grey.png"
CUTOUT = "ref/cutout.png"


@dataclass(frozen=True)
class ImageCase:
    """One input file and its expectation."""

    name: str
    category: str
    file: str  # under files/ when committed, else a name for uploads
    make: Callable[[], bytes]
    status: int = 400  # 200 = accepted
    code: str | None = "bad_image"
    words: tuple[str, ...] = ()
    finds: str | None = None  # accepted: the catalogue item a search with it must return first
    committed: bool = True

    @property
    def accepted(self) -> bool:
        return self.status == 200

    def data(self) -> bytes:
        if self.committed:
            return (FILES / self.file).read_bytes()
        return self.make()


# ------------------------------------------------------------------------------------------------ makers
def photo(seed: int, size: tuple[int, int] = (160, 200)) -> Image.Image:
    """A synthetic product photo: a striped coloured block on a light background, different per seed."""
    rng = np.random.default_rng(seed)
    width, height = size
    pixels = np.full((height, width, 3), 235, dtype=np.uint8)
    colour = rng.integers(0, 255, size=3, dtype=np.uint8)
    top, left = rng.integers(10, height // 3), rng.integers(10, width // 3)
    bottom, right = rng.integers(2 * height // 3, height - 10), rng.integers(2 * width // 3, width - 10)
    pixels[top:bottom, left:right] = colour
    pixels[top : bottom : rng.integers(2, 12), left:right] = 255 - colour
    return Image.fromarray(pixels)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@functools.cache
def reference_images() -> dict[str, bytes]:
    """The catalogue items the accepted cases must find (ids relative to files/)."""
    cutout = Image.new("RGB", (160, 200), (255, 255, 255))
    cutout.paste((200, 30, 40), (30, 40, 130, 170))
    cutout.paste((20, 20, 120), (60, 70, 100, 140))
    return {
        PHOTO_A: encode(photo(101), "PNG"),
        PHOTO_B: encode(photo(202), "PNG"),
        GREY: encode(photo(303).convert("L"), "PNG"),
        CUTOUT: encode(cutout, "PNG"),
    }


def _ref(name: str) -> Image.Image:
    return Image.open(io.BytesIO(reference_images()[name]))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, bit_depth: int = 1, colour: int = 0, idat: bytes | None = None) -> bytes:
    """A well-formed PNG claiming ``width`` x ``height`` with a token of pixel data: the shape of a bomb."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    pixels = idat if idat is not None else zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


@functools.cache
def gzip_of_zeros(expanded: int, chunk: int = 1024 * 1024) -> bytes:
    """A valid gzip member of ``expanded`` zero bytes (a multiple of ``chunk``), built in well under a second:
    ``chunk`` zeros are compressed once and ended with a full flush, which resets the compressor, so the same
    bytes encode every further chunk; the trailer carries the CRC-32 and the length of the whole. About 1 KB on
    the wire per MiB: what a decompression bomb behind a query URL sends as ``Content-Encoding: gzip``."""
    if expanded % chunk:
        raise ValueError(f"expanded must be a multiple of {chunk}")
    zeros = bytes(chunk)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(expanded // chunk):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    final = b"\x03\x00"  # an empty final fixed-Huffman block
    return header + piece * (expanded // chunk) + final + struct.pack("<II", crc, expanded % 2**32)


def brotli_of_zeros(expanded: int, quality: int = 1, chunk: int = 16 * 1024 * 1024) -> bytes:
    """A brotli stream of ``expanded`` zero bytes (needs the ``brotli`` package): a few KB per GiB."""
    import brotli

    compressor = brotli.Compressor(quality=quality, lgwin=24)
    zeros = bytes(chunk)
    parts = [compressor.process(zeros) for _ in range(expanded // chunk)]
    return b"".join([*parts, compressor.finish()])


def png_zlib_bomb() -> bytes:
    """A *complete* PNG of 9000x9000 pixels (81 MP, 243 MB decoded) in about 80 KB: it must be refused by
    its header, never inflated."""
    row = b"\x00" + b"\x00" * 9000 * 3
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(9000)) + compressor.flush()
    return png_header(9000, 9000, 8, 2, idat=body)


@functools.cache
def progressive_scan_bomb(copies: int = 3000) -> bytes:
    """A flat 6000x6000 grey progressive JPEG whose last scan (an AC refinement, with its Huffman table) is
    repeated ``copies`` times: 387 KB, and libjpeg passes over all 36 million coefficients once a scan, which
    took 74 s of CPU before scans were counted."""
    data = encode(Image.new("L", (6000, 6000), 128), "JPEG", progressive=True, quality=75)
    last_scan = data.rindex(b"\xff\xc4")  # the last scan's Huffman table, then its SOS and entropy-coded data
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * copies + data[end:]


@functools.cache
def float_tiff_bomb() -> bytes:
    """8000x5000 32-bit float grey (40 MP, within the pixel limit) in 232 KB of deflate: 160 MB decoded, and
    the conversion to 8-bit RGB took 0.9 GB a request before decodes were budgeted by mode."""
    return encode(Image.new("F", (8000, 5000), 0.0), "TIFF", compression="tiff_adobe_deflate")


def constant_wide_tiff() -> bytes:
    """32-bit integer grey ("I"), every sample 70000: beyond 16 bits, so it is stretched from its min to its
    max, which are equal (a division by zero once). Shown mid-grey."""
    return encode(Image.new("I", (64, 64), 70000), "TIFF")


def tiff_im_polyglot() -> bytes:
    """An uncompressed TIFF of photo A whose first bytes are also a Pillow "IM" header (for a 16x16 grey
    picture of whatever bytes follow): an unrestricted ``Image.open`` tries IM before TIFF and says "IM".

    The TIFF header's first line, up to the first newline, reads as an IM "key: value" line; the IM lines go
    where Pillow wrote the first directory (at offset 8), and the directory moves to the end of the file,
    its values and the pixel data staying where they were.
    """
    data = bytearray(encode(_ref(PHOTO_A), "TIFF"))
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    directory = bytes(data[ifd : ifd + 2 + 12 * count + 4])
    data += b"\0" * (len(data) % 2)
    while set(struct.pack("<I", len(data))) & set(b"\n\r:"):  # the offset is part of the first IM line
        data += b"\0\0"
    struct.pack_into("<I", data, 4, len(data))
    data += directory
    lines = b": polyglot\nImage type: L image\nImage size (x*y): 16*16\n\x1a"
    assert ifd == 8 and len(lines) <= len(directory)
    data[8 : 8 + len(lines)] = lines
    return bytes(data)


def gif_screen_bomb() -> bytes:
    """A GIF whose logical screen and only frame claim 65535x65535 pixels."""
    screen = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, 65535, 65535) + b"\x00" + b"\x02\x02\x44\x01\x00" + b"\x3b"
    return screen + frame


def jpeg_with_dimensions(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 marker is rewritten to claim ``width`` x ``height``."""
    data = bytearray(encode(photo(5, (64, 64)), "JPEG", quality=80))
    at = data.index(b"\xff\xc0")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def progressive_jpeg_with_dimensions(width: int, height: int) -> bytes:
    """A real small progressive JPEG whose SOF2 marker is rewritten to claim ``width`` x ``height``: libjpeg
    would keep the coefficients of all of it at full size, however small it is decoded."""
    data = bytearray(encode(photo(5, (64, 64)), "JPEG", quality=80, progressive=True))
    at = data.index(b"\xff\xc2")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@functools.cache
def grey_scan_bomb(width: int, height: int, scans: int = 100) -> bytes:
    """A flat grey progressive JPEG whose last scan is repeated up to ``scans`` scans in all (within the scan
    limit): at 8000x6000, 100 passes over 48 million coefficients in 192 KB."""
    data = encode(Image.new("L", (width, height), 128), "JPEG", progressive=True, quality=75)
    last_scan, end = data.rindex(b"\xff\xc4"), data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * (scans - data.count(b"\xff\xda")) + data[end:]


@functools.cache
def phone_photo(progressive: bool = False) -> bytes:
    """Photo A as a 48-megapixel phone camera shoots it upright: stored 8000x6000 with EXIF orientation 6,
    shown 6000x8000 (the photo scaled up to 6000x7500 on its background); 0.9 MB at quality 85. (No camera
    grain: on these flat synthetic photos any grain costs the match more than the 0.9 the corpus asks;
    bench/bench_big_jpeg.py measures a grainy 2.6 MB one.)"""
    upright = Image.new("RGB", (6000, 8000), (235, 235, 235))
    upright.paste(_ref(PHOTO_A).resize((6000, 7500), Image.Resampling.BICUBIC), (0, 250))
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back
    return encode(stored, "JPEG", quality=85, progressive=progressive, exif=exif.tobytes())


def tiff_with_dimensions(width: int, height: int) -> bytes:
    data = bytearray(encode(photo(6, (64, 64)), "TIFF"))
    # Rewrite tags 256/257 (ImageWidth/ImageLength) in the first IFD (little-endian, as Pillow writes).
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(count):
        at = ifd + 2 + 12 * entry
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:
                data[at + 2 : at + 4] = struct.pack("<H", 4)  # SHORT -> LONG so the value fits
            struct.pack_into("<II", data, at + 4, 1, value)
    return bytes(data)


def bmp_with_dimensions(width: int, height: int) -> bytes:
    data = bytearray(encode(photo(7, (64, 64)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def webp_vp8x_with_dimensions(width: int, height: int) -> bytes:
    """An extended WebP header (VP8X) claiming ``width`` x ``height`` (at most 16384 each)."""
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: max(1, int(len(data) * keep))]


def bad_png_crc() -> bytes:
    data = bytearray(encode(_ref(PHOTO_A), "PNG"))
    data[29] ^= 0xFF  # the IHDR CRC
    return bytes(data)


def corrupt_png_pixels() -> bytes:
    """Valid chunks and CRCs, but the IDAT stream is not zlib."""
    good = encode(_ref(PHOTO_A), "PNG")
    image = Image.open(io.BytesIO(good))
    header = struct.pack(">IIBBBBB", *image.size, 8, 2, 0, 0, 0)
    junk = bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", junk) + _png_chunk(b"IEND", b"")


def jpeg_without_scan() -> bytes:
    """Every marker up to the scan header, then end of image: no pixel data at all."""
    data = encode(_ref(PHOTO_A), "JPEG", quality=85)
    return data[: data.index(b"\xff\xda")] + b"\xff\xd9"


def jpeg_zero_width() -> bytes:
    return jpeg_with_dimensions(0, 64)


def gif_bad_lzw() -> bytes:
    """A GIF whose first frame claims an LZW minimum code size of 12 (at most 8 is valid)."""
    data = bytearray(encode(_ref(PHOTO_A).convert("P"), "GIF"))
    at = data.index(b"\x2c")  # image descriptor
    data[at + 10] = 0  # no local colour table
    data[at + 10 + 1] = 12
    return bytes(data)


def webp_bad_chunk_size() -> bytes:
    data = bytearray(encode(_ref(PHOTO_A), "WEBP", quality=80))
    struct.pack_into("<I", data, 16, 0x7FFFFFF0)  # the VP8 chunk claims 2 GB
    return bytes(data)


def random_bytes(n: int = 4096, seed: int = 7) -> bytes:
    return bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8))


def cmyk_jpeg() -> bytes:
    return encode(_ref(PHOTO_A).convert("CMYK"), "JPEG", quality=95)


def sixteen_bit_png() -> bytes:
    grey = np.asarray(_ref(GREY), dtype=np.uint16) * 257  # the 8-bit value v becomes v * 257: top byte v
    return encode(Image.fromarray(grey.astype(np.uint16)), "PNG")


def palette_transparent_png() -> bytes:
    """The cut-out on a transparent background (palette + tRNS): composited over white it is the cut-out."""
    cutout = _ref(CUTOUT).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    white = cutout.getpixel((0, 0))
    # Scramble the transparent pixels' colour so only honouring the transparency gives back white.
    pixels = np.array(cutout)
    spare = next(i for i in range(8) if i not in np.unique(pixels))
    pixels[pixels == white] = spare
    image = Image.fromarray(pixels, "P")
    palette = cutout.getpalette()
    palette[spare * 3 : spare * 3 + 3] = [0, 0, 0]
    image.putpalette(palette)
    return encode(image, "PNG", transparency=spare)


def rgba_transparent_png() -> bytes:
    rgba = _ref(CUTOUT).convert("RGBA")
    pixels = np.array(rgba)
    background = (pixels[..., :3] == 255).all(axis=2)
    pixels[background] = (0, 0, 0, 0)  # transparent black: drawn over white, white again
    return encode(Image.fromarray(pixels, "RGBA"), "PNG")


def palette_transparent_gif() -> bytes:
    cutout = _ref(CUTOUT).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return encode(cutout, "GIF", transparency=cutout.getpixel((0, 0)))


def animated(fmt: str, **params: object) -> bytes:
    first, second = _ref(PHOTO_A), _ref(PHOTO_B)
    return encode(first, fmt, save_all=True, append_images=[second, second], duration=100, loop=0, **params)


@functools.cache
def many_frames_gif() -> bytes:
    """300 frames: only the first is decoded, however many follow."""
    first = _ref(PHOTO_A).convert("P", palette=Image.Palette.ADAPTIVE)
    rest = [photo(seed, (160, 200)).convert("P", palette=Image.Palette.ADAPTIVE) for seed in range(3)] * 100
    return encode(first, "GIF", save_all=True, append_images=rest, duration=20)


def exif_rotated_jpeg(orientation: int) -> bytes:
    """The photo stored turned, with the EXIF orientation that turns it back for display."""
    turn = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}[orientation]
    stored = _ref(PHOTO_A).transpose(turn)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def broken_exif_jpeg() -> bytes:
    """A good picture with an EXIF block that is garbage: shown unrotated, as browsers do."""
    return encode(_ref(PHOTO_A), "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xff" + b"\x00" * 20)


def jpeg_with_trailing_garbage() -> bytes:
    return encode(_ref(PHOTO_A), "JPEG", quality=95) + random_bytes(2000)


def thin_strip() -> bytes:
    """1 x 40000 pixels: within max_pixels, an extreme aspect ratio (resize_and_crop handles it)."""
    return encode(Image.new("RGB", (1, 40_000), (120, 60, 30)), "PNG")


def html_page() -> bytes:
    return b"<!DOCTYPE html>\n<html><head><title>Shop</title></head><body><img src='dress.jpg'></body></html>\n"


def svg_image() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<rect width="100" height="100" fill="red"/><image href="file:///etc/passwd"/></svg>\n'
    )


def svg_billion_laughs() -> bytes:
    return (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&d;&d;&d;&d;</text></svg>'
    )


def pdf_document() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
        b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def eps_document() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n0 0 moveto 100 100 lineto stroke\nshowpage\n"


def heic_header() -> bytes:
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200


def zip_archive() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", encode(photo(9, (64, 64)), "JPEG"))
    return buffer.getvalue()


def elf_binary() -> bytes:
    return b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + random_bytes(500, seed=3)


def utf16_text() -> bytes:
    return "\ufeffthis is not a photo of a dress\n".encode("utf-16-le")


def tga_image() -> bytes:
    return encode(photo(11, (64, 64)), "TGA")


def ico_image() -> bytes:
    return encode(photo(12, (64, 64)), "ICO")


def ppm_image() -> bytes:
    return encode(photo(13, (64, 64)), "PPM")


def gif_header_only() -> bytes:
    return b"GIF89a" + struct.pack("<HH", 10, 10) + b"\x00\x00\x00"


# ------------------------------------------------------------------------------------------------ the cases
def _a(name: str, file: str, make: Callable[[], bytes], finds: str | None, category: str) -> ImageCase:
    return ImageCase(name, category, file, make, status=200, code=None, finds=finds)


def _r(name: str, file: str, make: Callable[[], bytes], category: str, *words: str, **kw: object) -> ImageCase:
    return ImageCase(name, category, file, make, words=words, **kw)  # type: ignore[arg-type]


def _png_a() -> bytes:
    return reference_images()[PHOTO_A]


def _jpeg_a() -> bytes:
    return encode(_ref(PHOTO_A), "JPEG", quality=90)


def _fmt_a(fmt: str, **params: object) -> Callable[[], bytes]:
    return lambda: encode(_ref(PHOTO_A), fmt, **params)


def image_cases() -> list[ImageCase]:
    return [
        # -- valid but unusual: accepted, and found
        _a("cmyk jpeg", "accepted/cmyk.jpg", cmyk_jpeg, PHOTO_A, "colour space"),
        _a("16-bit grey png", "accepted/grey16.png", sixteen_bit_png, GREY, "bit depth"),
        _a("8-bit grey jpeg", "accepted/grey8.jpg", lambda: encode(_ref(GREY), "JPEG", quality=95), GREY, "bit depth"),
        _a("palette png with tRNS", "accepted/palette-trns.png", palette_transparent_png, CUTOUT, "transparency"),
        _a(
            "palette gif with transparency",
            "accepted/palette-trns.gif",
            palette_transparent_gif,
            CUTOUT,
            "transparency",
        ),
        _a("rgba png, transparent background", "accepted/rgba.png", rgba_transparent_png, CUTOUT, "transparency"),
        _a("animated gif", "accepted/animated.gif", lambda: animated("GIF"), PHOTO_A, "animated"),
        _a("animated webp", "accepted/animated.webp", lambda: animated("WEBP", lossless=True), PHOTO_A, "animated"),
        _a("animated png (apng)", "accepted/animated.png", lambda: animated("PNG"), PHOTO_A, "animated"),
        ImageCase(
            "gif with 300 frames",
            "animated",
            "300-frames.gif",
            many_frames_gif,
            200,
            None,
            finds=PHOTO_A,
            committed=False,
        ),
        _a("exif orientation 6", "accepted/exif-6.jpg", lambda: exif_rotated_jpeg(6), PHOTO_A, "exif"),
        _a("exif orientation 8", "accepted/exif-8.jpg", lambda: exif_rotated_jpeg(8), PHOTO_A, "exif"),
        _a("exif orientation 3", "accepted/exif-3.jpg", lambda: exif_rotated_jpeg(3), PHOTO_A, "exif"),
        _a("broken exif block", "accepted/broken-exif.jpg", broken_exif_jpeg, PHOTO_A, "exif"),
        _a(
            "progressive jpeg",
            "accepted/progressive.jpg",
            _fmt_a("JPEG", progressive=True, quality=90),
            PHOTO_A,
            "format",
        ),
        _a("jpeg with trailing bytes", "accepted/trailing.jpg", jpeg_with_trailing_garbage, PHOTO_A, "format"),
        _a("tiff (lzw)", "accepted/photo.tif", _fmt_a("TIFF", compression="tiff_lzw"), PHOTO_A, "format"),
        _a("tiff that also parses as IM", "accepted/tiff-im-polyglot.tif", tiff_im_polyglot, PHOTO_A, "format"),
        _a("32-bit grey tiff, all 70000", "accepted/constant-i32.tif", constant_wide_tiff, None, "bit depth"),
        _a("bmp", "accepted/photo.bmp", _fmt_a("BMP"), PHOTO_A, "format"),
        _a("webp lossy", "accepted/photo.webp", _fmt_a("WEBP", quality=90), PHOTO_A, "format"),
        _a("png named .jpg", "accepted/png-named.jpg", _png_a, PHOTO_A, "wrong extension"),
        _a("jpeg named .gif", "accepted/jpeg-named.gif", _jpeg_a, PHOTO_A, "wrong extension"),
        _a("jpeg named .txt", "accepted/jpeg-named.txt", _jpeg_a, PHOTO_A, "wrong extension"),
        _a("1x40000 strip", "accepted/strip-1x40000.png", thin_strip, None, "dimensions"),
        # A JPEG is limited by the size it is decoded at (1/8 here), no longer by its header's 48 megapixels.
        ImageCase(
            "phone jpeg 8000x6000", "dimensions", "phone.jpg", phone_photo, 200, None, finds=PHOTO_A, committed=False
        ),
        ImageCase(
            "progressive phone jpeg 8000x6000",
            "dimensions",
            "phone-progressive.jpg",
            lambda: phone_photo(progressive=True),
            200,
            None,
            finds=PHOTO_A,
            committed=False,
        ),
        # -- empty and truncated
        _r("zero bytes", "refused/empty.jpg", lambda: b"", "empty", "empty"),
        _r("one byte", "refused/one-byte.jpg", lambda: b"\xff", "truncated", "not an image"),
        _r("truncated jpeg", "refused/truncated.jpg", lambda: truncated(_jpeg_a()), "truncated", "truncated"),
        _r("truncated png", "refused/truncated.png", lambda: truncated(_png_a()), "truncated", "truncated"),
        _r("truncated gif", "refused/truncated.gif", lambda: truncated(_fmt_a("GIF")()), "truncated", "truncated"),
        _r("truncated webp", "refused/truncated.webp", lambda: truncated(_fmt_a("WEBP")()), "truncated", "truncated"),
        _r("truncated tiff", "refused/truncated.tif", lambda: truncated(_fmt_a("TIFF")()), "truncated", "truncated"),
        _r("truncated bmp", "refused/truncated.bmp", lambda: truncated(_fmt_a("BMP")()), "truncated", "truncated"),
        _r(
            "png signature only",
            "refused/png-signature.png",
            lambda: b"\x89PNG\r\n\x1a\n",
            "truncated",
            "png",
            "corrupt",
        ),
        _r("jpeg markers only", "refused/jpeg-soi.jpg", lambda: b"\xff\xd8\xff\xd9", "truncated", "not an image"),
        _r("gif header only", "refused/gif-header.gif", gif_header_only, "truncated", "gif", "corrupt"),
        # -- corrupt
        _r("png with bad crc", "refused/bad-crc.png", bad_png_crc, "corrupt", "png", "corrupt"),
        _r("png with non-zlib pixels", "refused/bad-idat.png", corrupt_png_pixels, "corrupt", "corrupt"),
        _r("jpeg without scan", "refused/no-scan.jpg", jpeg_without_scan, "corrupt", "jpeg"),
        _r("jpeg 0 pixels wide", "refused/zero-width.jpg", jpeg_zero_width, "corrupt", "jpeg", "corrupt"),
        _r("gif with bad lzw code size", "refused/bad-lzw.gif", gif_bad_lzw, "corrupt", "gif"),
        _r("webp with 2 GB chunk", "refused/bad-chunk.webp", webp_bad_chunk_size, "corrupt", "corrupt"),
        _r("random bytes", "refused/random.jpg", random_bytes, "corrupt", "not an image"),
        # -- bombs and enormous dimensions (refused from the header)
        _r(
            "png 30000x30000 header", "refused/bomb-header.png", lambda: png_header(30_000, 30_000), "bomb", "too large"
        ),
        _r("png 8000x6000 header", "refused/over-max-pixels.png", lambda: png_header(8000, 6000), "bomb", "8000x6000"),
        _r("png zlib bomb 9000x9000", "png-zlib-bomb.png", png_zlib_bomb, "bomb", "too large", committed=False),
        _r(
            "progressive jpeg with 3006 scans",
            "scan-bomb.jpg",
            progressive_scan_bomb,
            "bomb",
            "3,006 scans",
            "limit",
            committed=False,
        ),
        _r("float tiff 8000x5000", "float-8000x5000.tif", float_tiff_bomb, "bomb", "memory", committed=False),
        _r("gif 65535x65535", "refused/bomb.gif", gif_screen_bomb, "bomb", "too large"),
        _r("jpeg 65500x65500", "refused/bomb.jpg", lambda: jpeg_with_dimensions(65500, 65500), "bomb", "too large"),
        _r(
            "jpeg 13000x13000 header",
            "refused/bomb-13000.jpg",
            lambda: jpeg_with_dimensions(13000, 13000),
            "bomb",
            "too large",
            "120,000,000 for a JPEG",
        ),
        _r(
            "progressive jpeg 9000x9000 header",
            "refused/bomb-progressive.jpg",
            lambda: progressive_jpeg_with_dimensions(9000, 9000),
            "bomb",
            "memory",
            "coefficients at full size",
        ),
        _r(
            "grey jpeg 8000x6000, 100 scans",
            "scan-work-bomb.jpg",
            lambda: grey_scan_bomb(8000, 6000),
            "bomb",
            "100 scans",
            "billion coefficients",
            committed=False,
        ),
        _r("tiff 100000x100000", "refused/bomb.tif", lambda: tiff_with_dimensions(100_000, 100_000), "bomb", "large"),
        _r("bmp 60000x60000", "refused/bomb.bmp", lambda: bmp_with_dimensions(60_000, 60_000), "bomb", "large"),
        _r("webp 16384x16384", "refused/bomb.webp", lambda: webp_vp8x_with_dimensions(16384, 16384), "bomb", "large"),
        # -- not images, whatever the name says
        _r("html as .jpg", "refused/page.jpg", html_page, "posing", "html"),
        _r("svg as .png", "refused/drawing.png", svg_image, "posing", "svg"),
        _r("svg billion laughs", "refused/laughs.svg", svg_billion_laughs, "posing", "svg"),
        _r("pdf as .jpg", "refused/document.jpg", pdf_document, "posing", "pdf"),
        _r("eps (would run ghostscript)", "refused/drawing.eps", eps_document, "posing", "not an image"),
        _r("heic", "refused/photo.heic", heic_header, "posing", "heic"),
        _r("zip holding a jpeg", "refused/photos.zip.jpg", zip_archive, "posing", "not an image"),
        _r("elf executable", "refused/program.jpg", elf_binary, "posing", "not an image"),
        _r("utf-16 text", "refused/notes.jpg", utf16_text, "posing", "not an image"),
        _r("tga (no magic number)", "refused/photo.tga", tga_image, "unsupported format", "not an image"),
        _r("ico", "refused/favicon.ico", ico_image, "unsupported format", "not an image"),
        _r("ppm", "refused/photo.ppm", ppm_image, "unsupported format", "not an image"),
    ]


def huge_base64(size: int) -> str:
    """Base64 of ``size`` bytes (made at test time: megabytes are not committed)."""
    import base64

    return base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * (size - 4)).decode()


def deep_json(depth: int) -> bytes:
    return b'{"image_base64": ' + b"[" * depth + b"]" * depth + b"}"


def write_files() -> list[Path]:
    """(Re)write the committed files from the makers."""
    written = []
    for name, data in reference_images().items():
        written.append(_write(FILES / name, data))
    for case in image_cases():
        if case.committed:
            written.append(_write(FILES / case.file, case.make()))
    return written


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/hostile/corpus.py --write")
    paths = write_files()
    print(f"wrote {len(paths)} files, {sum(p.stat().st_size for p in paths):,} bytes, under {FILES}")


# ------------------------------------------------------------------------------------------------ fuzzed requests
# How fuzz/fuzz_request.py turns bytes into one HTTP request, so found/request-* files replay the same way:
# the first byte picks the route and body shape, the rest is the body (and, for multipart, a boundary).
API_KEY = "hostile-test-key"
BOUNDARY = "fuzzboundary"
REQUEST_SHAPES = (
    ("POST", "/api/search", "application/json"),
    ("POST", "/api/search", f"multipart/form-data; boundary={BOUNDARY}"),
    ("POST", "/postImage", "application/json"),
    ("POST", "/postURL", "application/json"),
    ("POST", "/api/items", f"multipart/form-data; boundary={BOUNDARY}"),
    ("POST", "/api/search", "application/x-www-form-urlencoded"),
)


def request_from_bytes(data: bytes) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path, headers, body) of the request that ``data`` stands for."""
    method, path, content_type = REQUEST_SHAPES[data[0] % len(REQUEST_SHAPES)] if data else REQUEST_SHAPES[0]
    headers = {"content-type": content_type, "x-api-key": API_KEY}
    return method, path, headers, data[1:]


def request_seeds() -> list[bytes]:
    """A few valid and invalid requests of every shape, for the request fuzzer to start from."""
    import base64
    import json

    small = encode(photo(1, (64, 64)), "JPEG", quality=70)
    b64 = base64.b64encode(small).decode()

    def part(name: str, content: bytes, filename: str | None = None) -> bytes:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"

    end = f"--{BOUNDARY}--\r\n".encode()
    return [
        b"\x00" + json.dumps({"image_base64": b64, "k": 3}).encode(),
        b"\x00" + json.dumps({"id": PHOTO_A, "k": 2, "filter": {"folder": ["ref"]}}).encode(),
        b"\x00" + json.dumps({"id": PHOTO_A, "filter": {"n": {"gte": 1, "lt": 5}}, "min_score": 0.5}).encode(),
        b"\x00" + json.dumps({"ref": "0123456789abcdef01234567"}).encode(),
        b"\x00" + json.dumps({"url": "http://127.0.0.1/x.jpg"}).encode(),
        b"\x01" + part("image", small, "a.jpg") + part("k", b"3") + part("filter", b'{"folder": "ref"}') + end,
        b"\x01" + part("image", small, "a.jpg") + part("min_score", b"0.1") + end,
        b"\x02" + json.dumps({"base64img": b64, "k": 3}).encode(),
        b"\x03" + json.dumps({"url": "file:///etc/passwd", "k": 1}).encode(),
        b"\x04" + part("image", small, "a.jpg") + part("id", b"fuzz/x") + part("metadata", b'{"a": 1}') + end,
        b"\x05" + b"id=ref%2Fphoto-a.png&k=3",
        # What the second hardening round closed: numbers no engine compares, lone surrogates, a wide filter,
        # deep metadata, URLs httpx cannot parse.
        b"\x00" + b'{"id": "ref/photo-a.png", "filter": {"n": 99999999999999999999, "m": {"lt": 1e400}}}',
        b"\x00"
        + json.dumps({"id": PHOTO_A, "filter": {f"f{i}": [f"v{j}" for j in range(20)] for i in range(8)}}).encode(),
        b"\x01"
        + part("image", small, "a.jpg")
        + part("filter", b'{"folder": "\\ud800", "n": ' + b"9" * 5000 + b"}")
        + end,
        b"\x03" + json.dumps({"url": "http://127.0.0.2/a\tb.jpg", "k": 1}).encode(),
        b"\x04" + part("image", small, "a.jpg") + part("metadata", b'{"a": ' * 300 + b"1" + b"}" * 300) + end,
    ]
