"""Tests for lookalike.images: every fixture is drawn with Pillow in memory, nothing is read from disk."""

from __future__ import annotations

import functools
import io
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hostile import corpus  # the hostile corpus's makers (all in memory too)
from PIL import ExifTags, Image, ImageFile

from lookalike import images
from lookalike.errors import ImageError
from lookalike.images import (
    DEFAULT_MAX_DECODE_BYTES,
    DEFAULT_MAX_PIXELS,
    MAX_JPEG_SCANS,
    image_format,
    image_size_of,
    load_image,
    resize_and_crop,
    to_rgb,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def close_to(pixel, expected, tolerance: int = 0) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, expected, strict=True))


def halves(size=(64, 48), left=RED, right=BLUE) -> Image.Image:
    image = Image.new("RGB", size, right)
    image.paste(left, (0, 0, size[0] // 2, size[1]))
    return image


def marked_corner(size: tuple[int, int], mark: int) -> Image.Image:
    """White, with a red ``mark`` x ``mark`` square in the stored top-left corner."""
    image = Image.new("RGB", size, WHITE)
    image.paste(RED, (0, 0, mark, mark))
    return image


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    return encode(image, "JPEG", quality=95, exif=exif)


def png_header(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height``, with pixel data far too short to decode."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def noise(size=(300, 200), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# --- decoding -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "tolerance"),
    [("JPEG", 40), ("PNG", 0), ("GIF", 0), ("WEBP", 40), ("BMP", 0), ("TIFF", 0)],
)
def test_decodes_common_formats(fmt, tolerance):
    image = load_image(encode(halves(), fmt))
    assert image.mode == "RGB"
    assert image.size == (64, 48)
    assert close_to(image.getpixel((8, 24)), RED, tolerance)
    assert close_to(image.getpixel((56, 24)), BLUE, tolerance)


def test_exif_orientation_6_turns_the_picture():
    image = load_image(with_orientation(marked_corner((40, 20), 8), 6))
    assert image.size == (20, 40)
    # Orientation 6 shows the stored top-left corner at the top right.
    assert close_to(image.getpixel((16, 3)), RED, 40)
    for corner in [(3, 3), (3, 36), (16, 36)]:
        assert close_to(image.getpixel(corner), WHITE, 40), corner


def test_image_size_of_reads_the_header_and_applies_orientation():
    assert image_size_of(encode(halves((64, 48)), "PNG")) == (64, 48)
    rotated = with_orientation(marked_corner((40, 20), 8), 6)
    assert image_size_of(rotated) == (20, 40) == load_image(rotated).size
    # The pixel data here could not be decoded: only the header is read.
    assert image_size_of(png_header(8000, 6000)) == (8000, 6000)


@pytest.mark.parametrize("payload", [b"", b"hello", b"\x89PNG\r\n\x1a\n"])
def test_image_size_of_rejects_unreadable_input(payload):
    with pytest.raises(ImageError):
        image_size_of(payload)


@pytest.mark.parametrize(
    ("min_side", "expected"),
    [
        (100, (250, 188)),
        (188, (250, 188)),  # 1500 / 8 rounds up to 188: still enough
        (189, (500, 375)),
        (256, (500, 375)),
        (375, (500, 375)),
        (376, (1000, 750)),
        (1500, (2000, 1500)),
        (3000, (2000, 1500)),
        (None, (2000, 1500)),
    ],
)
def test_draft_decodes_jpeg_at_the_smallest_scale_covering_min_side(min_side, expected):
    data = encode(Image.new("RGB", (2000, 1500), (90, 140, 200)), "JPEG")
    image = load_image(data, min_side=min_side)
    assert image.size == expected
    assert min(image.size) >= min(min_side or 0, 1500)
    assert image.mode == "RGB"


def test_draft_keeps_the_exif_orientation():
    data = with_orientation(marked_corner((2000, 1500), 400), 6)
    image = load_image(data, min_side=256)
    width, height = image.size
    assert (width, height) == (375, 500)
    assert 256 <= min(image.size) < 1500
    # The mark (a fifth of the stored width) now sits at the top right.
    assert close_to(image.getpixel((width - 20, 20)), RED, 40)
    assert close_to(image.getpixel((20, 20)), WHITE, 40)
    assert close_to(image.getpixel((width - 20, height - 20)), WHITE, 40)


def test_draft_is_ignored_for_other_formats():
    assert load_image(encode(Image.new("RGB", (600, 400)), "PNG"), min_side=100).size == (600, 400)


@pytest.mark.parametrize(("fmt", "tolerance"), [("GIF", 0), ("PNG", 0), ("WEBP", 40)])
def test_animated_images_give_their_first_frame(fmt, tolerance):
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    image = load_image(data)
    assert image.mode == "RGB"
    assert close_to(image.getpixel((8, 8)), RED, tolerance)


def test_cmyk_jpeg_colour_is_roughly_right():
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95)
    assert close_to(load_image(data).getpixel((8, 8)), RED, 40)


def test_sixteen_bit_png_becomes_an_eight_bit_gradient():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    data = encode(Image.fromarray(ramp), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    red = np.asarray(load_image(data))[0, :, 0].astype(int)
    assert np.all(np.diff(red) >= 0)
    assert red[0] <= 2 and red[-1] >= 253


def test_transparent_png_is_composited_over_white():
    image = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
    image.paste((255, 0, 0, 0), (10, 0, 20, 10))
    loaded = load_image(encode(image, "PNG"))
    assert loaded.getpixel((5, 5)) == RED
    assert loaded.getpixel((15, 5)) == WHITE


# --- refusing bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
def test_truncated_files_are_errors(fmt):
    data = encode(noise(), fmt)
    with pytest.raises(ImageError, match="truncated"):  # WebP fails already when opening
        load_image(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_random_bytes_are_not_an_image():
    data = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError, match="not an image"):
        load_image(data)


def test_empty_input():
    with pytest.raises(ImageError, match=r"empty input \(0 bytes\)"):
        load_image(b"")


@pytest.mark.parametrize(
    ("payload", "hint"),
    [
        (b"just some text, not a picture\n" * 20, "unrecognised format"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "SVG"),
        (b"<!DOCTYPE html><html><body><img src='x.jpg'></body></html>", "HTML"),
        (b"\xef\xbb\xbf  <html></html>", "HTML"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unrecognised format"),
        (b"P6\n4 4\n255\n" + b"\0" * 48, "unrecognised format"),  # PPM: valid, but not a product format
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "HEIC"),
        (b'{"image": "https://example.com/a.jpg"}', "unrecognised format"),
    ],
)
def test_documents_and_text_are_not_images(payload, hint):
    with pytest.raises(ImageError, match="not an image") as caught:
        load_image(payload)
    assert hint in str(caught.value)


def test_header_only_bomb_is_refused_before_decoding(pillow_decodes):
    data = png_header(8000, 6000)  # 48 MP; the pixel data is 16 bytes, so decoding would fail differently
    with pytest.raises(ImageError) as caught:
        load_image(data)
    assert pillow_decodes == []  # refused from the header: the decoder was never called
    assert str(caught.value) == "image too large: 8000x6000 pixels exceeds the limit of 40,000,000"


def test_huge_bomb_is_refused_without_decoding(pillow_decodes):
    data = png_header(30000, 30000)
    assert len(data) < 100
    pixel_limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="image too large") as caught:
        load_image(data)
    assert pillow_decodes == []
    load_image(encode(noise((64, 48)), "PNG"))
    assert pillow_decodes, "the spy sees a real decode"
    assert "limit" in str(caught.value)
    assert pixel_limit == Image.MAX_IMAGE_PIXELS  # global Pillow state untouched


def test_max_pixels_is_the_callers_limit():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    assert load_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageError, match="100x100 pixels exceeds the limit of 9,999"):
        load_image(data, max_pixels=9_999)
    assert DEFAULT_MAX_PIXELS == 40_000_000


def test_max_bytes_is_checked_before_opening():
    data = encode(Image.new("RGB", (32, 32)), "PNG")
    assert load_image(data, max_bytes=len(data)).size == (32, 32)
    with pytest.raises(ImageError, match="file too large"):
        load_image(data, max_bytes=len(data) - 1)
    with pytest.raises(ImageError) as caught:
        load_image(b"\0" * 32_715_571)  # not even an image: the size alone refuses it
    assert str(caught.value) == "file too large: 31.2 MB exceeds 30 MB"


# --- to_rgb ---------------------------------------------------------------------------------------------


def test_rgb_is_returned_as_is():
    image = Image.new("RGB", (4, 4), RED)
    assert to_rgb(image) is image


@pytest.mark.parametrize("mode", sorted(Image.MODES))
def test_every_pillow_mode_converts_to_rgb(mode):
    converted = to_rgb(Image.new(mode, (7, 5)))
    assert converted.mode == "RGB"
    assert converted.size == (7, 5)


def test_rgba_transparent_area_becomes_white():
    image = Image.new("RGBA", (20, 10), (255, 0, 0, 255))
    image.paste((255, 0, 0, 0), (10, 0, 20, 10))
    converted = to_rgb(image)
    assert converted.getpixel((5, 5)) == RED
    assert converted.getpixel((15, 5)) == WHITE


def test_half_transparent_red_is_pink_also_when_premultiplied():
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 128))
    for image in (rgba, rgba.convert("RGBa")):
        assert close_to(to_rgb(image).getpixel((0, 0)), (255, 127, 127), 2), image.mode


@pytest.mark.parametrize("mode", ["LA", "La"])
def test_grey_with_alpha(mode):
    image = Image.new("LA", (2, 1), (0, 255))
    image.putpixel((1, 0), (0, 0))
    converted = to_rgb(image.convert(mode))
    assert converted.getpixel((0, 0)) == (0, 0, 0)
    assert converted.getpixel((1, 0)) == WHITE


def palette_image() -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([*RED, *GREEN])
    image.putpixel((1, 0), 1)
    return image


def test_palette_without_transparency():
    converted = to_rgb(palette_image())
    assert converted.getpixel((0, 0)) == RED
    assert converted.getpixel((1, 0)) == GREEN


def test_palette_with_transparency_index():
    image = palette_image()
    image.info["transparency"] = 1
    converted = to_rgb(image)
    assert converted.getpixel((0, 0)) == RED
    assert converted.getpixel((1, 0)) == WHITE


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_transparency_survives_a_file(fmt):
    loaded = load_image(encode(palette_image(), fmt, transparency=1))
    assert loaded.getpixel((0, 0)) == RED
    assert loaded.getpixel((1, 0)) == WHITE


def test_palette_with_alpha_band():
    image = palette_image().convert("PA")
    image.putalpha(Image.frombytes("L", (2, 1), bytes([255, 0])))
    converted = to_rgb(image)
    assert converted.getpixel((0, 0)) == RED
    assert converted.getpixel((1, 0)) == WHITE


def test_grey_colour_key_transparency():
    loaded = load_image(encode(Image.frombytes("L", (2, 1), bytes([50, 200])), "PNG", transparency=50))
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((1, 0)) == (200, 200, 200)


def test_grey_and_bilevel():
    grey = to_rgb(Image.new("L", (1, 1), 77))
    assert grey.getpixel((0, 0)) == (77, 77, 77)
    bilevel = Image.new("1", (2, 1), 0)
    bilevel.putpixel((1, 0), 1)
    converted = to_rgb(bilevel)
    assert converted.getpixel((0, 0)) == (0, 0, 0)
    assert converted.getpixel((1, 0)) == WHITE


@pytest.mark.parametrize(
    ("mode", "value", "expected", "tolerance"),
    [
        ("CMYK", (0, 255, 255, 0), RED, 0),
        ("CMYK", (255, 0, 255, 0), GREEN, 0),
        ("CMYK", (0, 0, 0, 255), (0, 0, 0), 0),
        ("CMYK", (0, 0, 0, 0), WHITE, 0),
    ],
)
def test_cmyk(mode, value, expected, tolerance):
    assert close_to(to_rgb(Image.new(mode, (1, 1), value)).getpixel((0, 0)), expected, tolerance)


@pytest.mark.parametrize(("mode", "tolerance"), [("YCbCr", 3), ("LAB", 12), ("HSV", 3)])
def test_other_colour_spaces_round_trip(mode, tolerance):
    original = Image.new("RGB", (3, 1))
    for x, colour in enumerate([(200, 30, 40), (20, 180, 60), (30, 60, 220)]):
        original.putpixel((x, 0), colour)
    converted = to_rgb(original.convert(mode))
    for x in range(3):
        assert close_to(converted.getpixel((x, 0)), original.getpixel((x, 0)), tolerance), (mode, x)


@pytest.mark.parametrize("mode", ["I;16", "I;16L", "I;16B"])
def test_sixteen_bit_gradient_becomes_eight_bit_gradient(mode):
    ramp = np.linspace(0, 65535, 300).astype(np.uint16)
    dtype = ">u2" if mode == "I;16B" else "<u2"
    image = Image.frombytes(mode, (300, 1), ramp.astype(dtype).tobytes())
    pixels = np.asarray(to_rgb(image))[0].astype(int)
    assert np.array_equal(pixels[:, 0], pixels[:, 1]) and np.array_equal(pixels[:, 0], pixels[:, 2])
    grey = pixels[:, 0]
    assert np.all(np.diff(grey) >= 0)
    assert grey[0] == 0 and grey[-1] == 255
    assert len(np.unique(grey)) > 200  # a real gradient, not a few clipped steps
    assert grey[150] == ramp[150] >> 8


def test_sixteen_bit_transparency_is_applied():
    values = np.array([[7, 40000]], dtype=np.uint16)
    loaded = load_image(encode(Image.fromarray(values), "PNG", transparency=7))
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((1, 0)) == (156, 156, 156)


@pytest.mark.parametrize(
    ("mode", "top", "expected_top"),
    [
        ("I", 65535, 255),  # 16-bit data in a 32-bit container: divided by 256
        ("I", 200, 200),  # already 8-bit: kept
        ("I", 10_000_000, 255),  # beyond 16 bits: stretched min..max
        ("F", 1.0, 255),  # normalised float: x255
        ("F", 255.0, 255),
        ("F", 1000.0, 4),  # 0..65535 rule: 1000 / 256
    ],
)
def test_wide_modes_become_a_visible_gradient(mode, top, expected_top):
    dtype = np.int32 if mode == "I" else np.float32
    ramp = np.linspace(0, top, 256).astype(dtype).reshape(1, 256)
    image = Image.frombytes(mode, (256, 1), ramp.tobytes())
    grey = np.asarray(to_rgb(image))[0, :, 0].astype(int)
    assert np.all(np.diff(grey) >= 0)
    assert grey[0] == 0
    assert grey[-1] == expected_top
    if expected_top == 255:
        assert len(np.unique(grey)) > 100


def test_float_nan_and_negative_values_are_black():
    values = np.array([[np.nan, -5.0, 0.5, np.inf]], dtype=np.float32)
    grey = np.asarray(to_rgb(Image.frombytes("F", (4, 1), values.tobytes())))[0, :, 0]
    assert grey.tolist() == [0, 0, 128, 255]


def _old_wide_to_8bit(values: np.ndarray, *, is_float: bool) -> np.ndarray:
    """The conversion as it was before it worked in row bands (whole-image copies): the reference."""
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


def _old_to_rgb_of_grey(image: Image.Image) -> np.ndarray:
    """The old _grey_to_8bit (an alpha band for a colour key), then the old to_rgb's compositing over white."""
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        grey = (values >> 8).astype(np.uint8)
    else:
        grey = _old_wide_to_8bit(values.astype(np.float32), is_float=image.mode == "F")
    result = Image.fromarray(grey)
    transparent = image.info.get("transparency")
    if isinstance(transparent, int) and not isinstance(transparent, bool):
        result.putalpha(Image.fromarray(np.where(values == transparent, 0, 255).astype(np.uint8)))
        rgba = result.convert("RGBA")
        white = Image.new("RGB", result.size, WHITE)
        white.paste(rgba, mask=rgba)
        return np.asarray(white)
    return np.asarray(result.convert("RGB"))


def _wide_cases() -> list[tuple[np.ndarray, bool]]:
    """The ramps of test_wide_modes_become_a_visible_gradient, and noisy arrays with NaN, infinities and
    negative values, shaped so that they span many row bands."""
    cases = []
    for mode, top in [("I", 65535), ("I", 200), ("I", 10_000_000), ("F", 1.0), ("F", 255.0), ("F", 1000.0)]:
        dtype = np.int32 if mode == "I" else np.float32
        cases.append((np.linspace(0, top, 256).astype(dtype).reshape(1, 256).astype(np.float32), mode == "F"))
    cases.append((np.array([[np.nan, -5.0, 0.5, np.inf]], dtype=np.float32), True))
    rng = np.random.default_rng(3)
    for scale in (0.9, 200.0, 60000.0, 3e6, 1e30):
        values = (rng.standard_normal((97, 131)) * scale).astype(np.float32)
        values[rng.random(values.shape) < 0.05] = np.nan
        values[5, 7], values[60, 1] = np.inf, -np.inf
        cases.append((values, True))
        cases.append((np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0), False))
    cases.append((np.full((40, 50), np.nan, dtype=np.float32), True))
    return cases


@pytest.mark.parametrize("band_samples", [64, 1 << 18])
def test_wide_to_8bit_in_bands_gives_exactly_the_old_result(monkeypatch, band_samples):
    monkeypatch.setattr(images.convert, "_BAND_SAMPLES", band_samples)  # 64: every array above is many bands
    for values, is_float in _wide_cases():
        expected = _old_wide_to_8bit(values, is_float=is_float)
        assert np.array_equal(images._wide_to_8bit(values, is_float=is_float), expected), (values[:1, :4], is_float)


@pytest.mark.parametrize(
    ("mode", "values", "transparency"),
    [
        ("I;16", np.linspace(0, 65535, 97 * 131).astype(np.uint16).reshape(97, 131), None),
        ("I;16", np.linspace(0, 65535, 97 * 131).astype(np.uint16).reshape(97, 131), 65535),
        ("I;16B", np.linspace(0, 65535, 97 * 131).astype(">u2").reshape(97, 131), 0),
        ("I", np.linspace(-50, 20_000_000, 97 * 131).astype(np.int32).reshape(97, 131), None),
        ("I", np.linspace(0, 40_000, 97 * 131).astype(np.int32).reshape(97, 131), 40_000),
        ("F", np.linspace(-0.2, 1.0, 97 * 131).astype(np.float32).reshape(97, 131), None),
    ],
)
def test_wide_grey_to_rgb_gives_exactly_the_old_result(monkeypatch, mode, values, transparency):
    monkeypatch.setattr(images.convert, "_BAND_SAMPLES", 500)  # a few rows a band
    image = Image.frombytes(mode, (values.shape[1], values.shape[0]), values.tobytes())
    if transparency is not None:
        image.info["transparency"] = transparency
    expected = _old_to_rgb_of_grey(image)
    assert np.array_equal(np.asarray(to_rgb(image)), expected)


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [70000, 70000, 70000], [128, 128, 128]),
        ("F", [1e6, 1e6, 1e6], [128, 128, 128]),
        ("F", [70000.0, np.nan, np.inf, -np.inf], [128, 0, 255, 0]),
    ],
)
def test_a_constant_beyond_16_bits_is_mid_grey(mode, values, expected):
    """Stretching min..max has no range when all values are equal: mid-grey, not a ZeroDivisionError."""
    array = np.array([values], dtype=np.int32 if mode == "I" else np.float32)
    image = Image.frombytes(mode, (len(values), 1), array.tobytes())
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == expected


def test_a_constant_32_bit_tiff_loads_mid_grey():
    loaded = load_image(encode(Image.new("I", (64, 64), 70000), "TIFF"))
    assert np.all(np.asarray(loaded) == 128)


# --- the JPEG scan count -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "progressive", "scans"),
    [("RGB", False, 1), ("L", False, 1), ("RGB", True, 10), ("L", True, 6), ("CMYK", True, 18)],
)
def test_scan_count_of_ordinary_jpegs(mode, progressive, scans):
    data = encode(noise((120, 80)).convert(mode), "JPEG", progressive=progressive, quality=90)
    assert images._jpeg_scan_count(data) == scans
    assert scans <= MAX_JPEG_SCANS
    assert load_image(data).size == (120, 80)


def test_scan_count_skips_segment_payloads_and_stops_at_the_end_of_the_image():
    data = encode(noise((64, 48)), "JPEG", quality=90)
    comment = b"\xff\xda" * 100  # SOS markers inside a COM segment's payload are not scans
    with_comment = data[:2] + b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment + data[2:]
    assert images._jpeg_scan_count(with_comment) == 1
    assert images._jpeg_scan_count(data + data + data) == 1  # what follows EOI is never decoded
    assert load_image(with_comment).size == (64, 48)


def test_scan_count_is_linear_in_the_worst_case():
    """Entropy-coded data of nothing but stuffed bytes and restart markers: skipped in C, not byte by byte."""
    data = encode(noise((64, 48)), "JPEG", quality=90)
    sos = data.index(b"\xff\xda")
    header_end = sos + 2 + struct.unpack_from(">H", data, sos + 2)[0]
    filler = (b"\xff\x00" * 1000 + b"\xff\xd3" + b"\xff" * 1000 + b"\x00") * 2500  # 10 MB
    started = time.perf_counter()
    assert images._jpeg_scan_count(data[:header_end] + filler + data[header_end:]) == 1
    # Byte by byte in Python, 10 MB of markers take tens of seconds; skipped in C, milliseconds. 3 s leaves a
    # loaded machine room and still tells the two apart.
    assert time.perf_counter() - started < 3.0


def test_scan_count_refuses_a_file_of_countless_markers():
    data = encode(noise((64, 48)), "JPEG", quality=90)
    empty_comments = b"\xff\xfe\x00\x02" * 20_000
    with pytest.raises(ImageError, match="more than 10,000 markers"):
        load_image(data[:2] + empty_comments + data[2:])


def test_progressive_scan_bomb_is_refused_before_decoding():
    bomb = corpus.progressive_scan_bomb()  # 6000x6000, 3,006 scans in 387 KB: 74 s of CPU to decode
    assert len(bomb) < 400_000
    assert images._jpeg_scan_count(bomb) == 3006
    started = time.process_time()
    with pytest.raises(ImageError) as caught:
        load_image(bomb, min_side=256)
    assert time.process_time() - started < 0.5
    assert str(caught.value).startswith("JPEG has 3,006 scans, more than the limit of 100")


# --- the decode deadline -------------------------------------------------------------------------------------


def test_decode_timeout_passes_through_pillow():
    """Pillow turns IndexError/struct.error from a read into "truncated", and Image.open tries the next format
    on SyntaxError, IndexError, TypeError and struct.error: the timeout must be none of them."""
    caught_by_pillow = (OSError, ValueError, SyntaxError, IndexError, TypeError, KeyError, EOFError, struct.error)
    assert not issubclass(images._DecodeTimeout, caught_by_pillow)


def test_a_slow_decode_runs_into_the_deadline():
    data = encode(noise((1500, 1000)), "PNG", compress_level=1)  # 4.5 MB of pixel data: tens of ms
    assert load_image(data).size == (1500, 1000)
    started = time.process_time()
    with pytest.raises(ImageError, match=r"took longer than 0\.0001 s of CPU time"):
        load_image(data, max_decode_seconds=0.0001)
    assert time.process_time() - started < 0.5


def test_the_deadline_stops_a_progressive_jpeg_within_the_scan_limit():
    """100 scans are allowed, and at 6000x6000 they cost seconds: the deadline stops the decode midway."""
    slow = corpus.progressive_scan_bomb(94)
    assert images._jpeg_scan_count(slow) == MAX_JPEG_SCANS
    started = time.process_time()
    with pytest.raises(ImageError, match=r"decoding took longer than 0\.2 s of CPU time"):
        load_image(slow, min_side=256, max_decode_seconds=0.2)
    assert time.process_time() - started < 1.5  # the deadline is looked at every 4 KB read: ~48 scans


def test_the_deadline_covers_reading_the_header(monkeypatch):
    clock = iter([0.0, 10.0])  # the reader is made at 0 s; its first read comes "10 s" later
    monkeypatch.setattr(time, "thread_time", lambda: next(clock, 10.0))
    with pytest.raises(ImageError, match=r"reading the image header took longer than 3 s"):
        load_image(encode(Image.new("RGB", (8, 8)), "PNG"))


# --- the decode memory budget ---------------------------------------------------------------------------------


def _estimate(data: bytes) -> int:
    """The memory load_image would budget for ``data`` at full size (no draft)."""
    image = images._open(data)
    scans = images._jpeg_scan_count(data) if image.format == "JPEG" else 0
    return images._decode_bytes_needed(image, image.size, scans, len(data))


def _progressive_with_dimensions(width: int, height: int) -> bytes:
    data = bytearray(encode(noise((64, 64)), "JPEG", progressive=True, quality=80))
    at = data.index(b"\xff\xc2")
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def test_an_ordinary_40_megapixel_jpeg_or_png_is_within_the_budget():
    jpeg, png = corpus.jpeg_with_dimensions(8000, 5000), png_header(8000, 5000)
    for header in (jpeg, png):
        assert 40_000_000 * 4 < _estimate(header) <= DEFAULT_MAX_DECODE_BYTES  # RGB is 4 bytes a pixel in Pillow
    assert load_image(jpeg).size == (8000, 5000)  # libjpeg fills the missing data with grey
    with pytest.raises(ImageError, match="truncated"):  # past the budget; then the pixel data is missing
        load_image(png)


def test_the_budget_refuses_a_40_megapixel_float_tiff_and_says_how_much_it_needs():
    bomb = corpus.float_tiff_bomb()
    assert len(bomb) < 300_000
    needed = _estimate(bomb)
    assert needed > 40_000_000 * (4 + 1 + 4)  # float samples, the 8-bit grey, its RGB
    with pytest.raises(ImageError) as caught:
        load_image(bomb)
    message = str(caught.value)
    assert message.startswith("image too large to decode: 8000x5000 TIFF in mode F would need about")
    assert f"{needed / 2**20:.1f} MB of memory, more than the limit of 192 MB" in message


def test_the_budget_counts_the_mode_transparency_and_progressive_coefficients():
    rgb, rgba = _estimate(png_header(4000, 2500)), _estimate(corpus.png_header(4000, 2500, 8, 6))
    assert rgba - rgb == 10_000_000 * 4  # the white background to composite RGBA over
    grey16 = _estimate(corpus.png_header(4000, 2500, 16, 0))
    assert grey16 - rgb == 10_000_000 * (2 + 1 + 4 - 4) + 32 * images._BAND_SAMPLES  # then 8-bit, then RGB
    baseline = _estimate(corpus.jpeg_with_dimensions(4000, 2500))
    progressive = _estimate(_progressive_with_dimensions(4000, 2500))
    # 4:2:0 coefficients at 2 bytes each, in 8x8 blocks of whole MCUs: Y 500x314 blocks, Cb and Cr 250x157.
    assert progressive - baseline == (500 * 314 + 2 * 250 * 157) * 64 * 2
    # A 40 MP progressive JPEG: refused at full size, but within budget at 1/8 scale (the coefficients stay).
    with pytest.raises(ImageError, match="memory"):
        load_image(_progressive_with_dimensions(8000, 5000))
    assert load_image(_progressive_with_dimensions(8000, 5000), min_side=256).size == (1000, 625)
    with pytest.raises(ImageError, match="memory"):
        load_image(png_header(4000, 2500), max_decode_bytes=rgb - 1)


def test_decoding_a_20_megapixel_float_tiff_stays_within_the_budget(tmp_path):
    """Peak resident memory in a fresh process, and the array memory (tracemalloc sees NumPy's) here."""
    data = encode(Image.new("F", (5000, 4000), 0.25), "TIFF", compression="tiff_adobe_deflate")
    needed = _estimate(data)
    assert needed <= DEFAULT_MAX_DECODE_BYTES
    tracemalloc.start()
    try:
        assert load_image(data).size == (5000, 4000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000 * 1.5, peak  # the 8-bit grey (1 byte a pixel) and small bands; it used to be ~10x

    path = tmp_path / "float.tif"
    path.write_bytes(data)
    script = (
        "import resource, sys\n"
        "from lookalike.images import load_image\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "load_image(data)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    grown = int(result.stdout)
    assert grown <= needed * 1.1, (grown, needed)


# --- large JPEGs: judged by the size they are decoded at ------------------------------------------------------

PHONE = (8000, 6000)  # a 48-megapixel phone camera's photo
MODEL_SIDE = 274  # efficientnet-lite1's resize, the default model's decode_min_side


@functools.cache
def phone_jpeg(progressive: bool) -> bytes:
    """8000x6000 like a phone photo: red left half, blue right half, with grain (a few MB, not a flat file;
    the grain is made at 1/4 and scaled up, as noise at full size takes Pillow seconds)."""
    grain = Image.effect_noise((2000, 1500), 48).resize(PHONE, Image.Resampling.BILINEAR).convert("RGB")
    return encode(Image.blend(halves(PHONE), grain, 0.15), "JPEG", quality=85, progressive=progressive)


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_an_8000x6000_phone_jpeg_decodes_at_the_dct_scale_the_model_needs(progressive):
    data = phone_jpeg(progressive)
    assert len(data) <= 10 * 2**20  # within the server's upload limit
    assert PHONE[0] * PHONE[1] > DEFAULT_MAX_PIXELS  # refused outright before: its header is over max_pixels
    image = load_image(data, min_side=MODEL_SIDE)
    assert image.size == (1000, 750) and image.mode == "RGB"  # 1/8: 750 still covers 274
    assert close_to(image.getpixel((100, 375)), RED, 60) and close_to(image.getpixel((900, 375)), BLUE, 60)
    assert resize_and_crop(image, MODEL_SIDE, 240).shape == (240, 240, 3)
    # At full size it is 48 megapixels to decode: still over max_pixels.
    with pytest.raises(ImageError) as caught:
        load_image(data)
    assert str(caught.value) == "image too large: 8000x6000 pixels exceeds the limit of 40,000,000"


def test_max_pixels_limits_the_drafted_size_of_a_jpeg():
    data = phone_jpeg(False)
    assert load_image(data, min_side=MODEL_SIDE, max_pixels=750_000).size == (1000, 750)
    with pytest.raises(ImageError) as caught:
        load_image(data, min_side=MODEL_SIDE, max_pixels=749_999)
    assert str(caught.value) == "image too large: 8000x6000 pixels, decoded as 1000x750, exceeds the limit of 749,999"
    # Other formats have no DCT scaling: their header's size is what they decode to.
    with pytest.raises(ImageError, match="8000x6000 pixels exceeds the limit of 40,000,000"):
        load_image(png_header(*PHONE), min_side=MODEL_SIDE)


@pytest.mark.parametrize("side", [60_000, 65_500])
def test_a_jpeg_bomb_of_60000x60000_is_still_refused_at_once(side):
    bomb = corpus.jpeg_with_dimensions(side, side)  # 3.6 gigapixels claimed in 1 KB
    assert len(bomb) < 2000
    started = time.process_time()
    with pytest.raises(ImageError) as caught:
        load_image(bomb, min_side=MODEL_SIDE)  # even at 1/8 it would be 56 megapixels and more
    assert time.process_time() - started < 0.5
    assert str(caught.value).startswith("image too large:")
    assert f"{side * side} pixels" in str(caught.value)  # Pillow's own guard, while opening


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns from 89.5 megapixels
def test_a_jpeg_header_over_the_ceiling_is_refused_at_any_scale():
    assert images.MAX_JPEG_PIXELS == 120_000_000
    started = time.process_time()
    with pytest.raises(ImageError) as caught:
        load_image(corpus.jpeg_with_dimensions(13_000, 13_000), min_side=MODEL_SIDE)  # would be 1625x1625
    assert time.process_time() - started < 0.5
    assert str(caught.value) == (
        "image too large: 13000x13000 pixels exceeds the limit of 120,000,000 for a JPEG at any scale"
    )
    # Just under it, a header-only 120-megapixel JPEG costs a 1/8 decode (libjpeg fills the missing data).
    started = time.process_time()
    assert load_image(corpus.jpeg_with_dimensions(12_000, 10_000), min_side=MODEL_SIDE).size == (1500, 1250)
    assert time.process_time() - started < 1.0
    # A caller allowing more pixels than the ceiling allows them in JPEGs too.
    allowed = load_image(corpus.jpeg_with_dimensions(13_000, 13_000), min_side=MODEL_SIDE, max_pixels=170_000_000)
    assert allowed.size == (1625, 1625)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_huge_progressive_jpeg_is_refused_for_its_full_size_coefficients():
    """libjpeg keeps a progressive JPEG's coefficients for the whole image at full size, whatever the scale."""
    within = _progressive_with_dimensions(*PHONE)
    assert load_image(within, min_side=MODEL_SIDE).size == (1000, 750)  # 144 MB of coefficients: within
    bomb = _progressive_with_dimensions(12_000, 10_000)  # 120 megapixels claimed in 3 KB: 360 MB of them
    started = time.process_time()
    with pytest.raises(ImageError) as caught:
        load_image(bomb, min_side=MODEL_SIDE)
    assert time.process_time() - started < 0.5
    message = str(caught.value)
    assert message.startswith("image too large to decode: 12000x10000 JPEG in mode RGB would need about 35")
    assert message.endswith("more than the limit of 192 MB (a progressive JPEG keeps its coefficients at full size)")


def test_the_scans_of_a_large_jpeg_are_limited_by_the_work_they_make():
    """100 scans of 36 megapixels were the most the limits let through before; 100 of 48 are more work."""
    worst = corpus.progressive_scan_bomb(94)  # 6000x6000 grey, 100 scans: 3.6 billion coefficient passes
    assert images._jpeg_scan_count(worst) == MAX_JPEG_SCANS
    assert MAX_JPEG_SCANS * 6000 * 6000 <= images.MAX_JPEG_COEFFICIENT_PASSES  # (it runs into the deadline)
    bomb = corpus.grey_scan_bomb(*PHONE, 100)
    assert images._jpeg_scan_count(bomb) == 100
    started = time.process_time()
    with pytest.raises(ImageError) as caught:
        load_image(bomb, min_side=MODEL_SIDE)
    assert time.process_time() - started < 0.5
    assert str(caught.value).startswith(
        "JPEG of 8000x6000 pixels has 100 scans, which would pass over 4.8 billion coefficients, more than the"
        " limit of 4 billion"
    )
    assert load_image(corpus.grey_scan_bomb(*PHONE, 10), min_side=MODEL_SIDE).size == (1000, 750)  # a real script's 10


@pytest.mark.parametrize("progressive", [False, True], ids=["baseline", "progressive"])
def test_decoding_an_8000x6000_phone_jpeg_stays_within_its_estimate(tmp_path, progressive):
    """Peak resident memory of the 1/8 decode in a fresh process: a few MB baseline, the full-size
    coefficients (144 MB) progressive; the estimate covers both."""
    data = phone_jpeg(progressive)
    image = images._open(data)
    image.draft("RGB", (1000, 750))
    needed = images._decode_bytes_needed(image, PHONE, images._jpeg_scan_count(data), len(data))
    assert needed <= DEFAULT_MAX_DECODE_BYTES
    assert (needed > 140 * 2**20) if progressive else (needed < 10 * 2**20)
    path = tmp_path / "phone.jpg"
    path.write_bytes(data)
    script = (
        "import resource, sys, time\n"
        "from lookalike.images import load_image\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "started = time.thread_time()\n"
        f"assert load_image(data, min_side={MODEL_SIDE}).size == (1000, 750)\n"
        "print(time.thread_time() - started, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seconds, grown = result.stdout.split()
    assert int(grown) <= needed * 1.1, (grown, needed)
    assert float(seconds) < images.DEFAULT_MAX_DECODE_SECONDS / 3  # measured: 0.05 s baseline, 0.35 progressive


# --- image_format ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_image_format_names_the_format(fmt):
    assert image_format(encode(halves(), fmt)) == fmt


@pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning")
def test_image_format_and_load_image_agree_on_a_tiff_that_also_parses_as_im():
    polyglot = corpus.tiff_im_polyglot()
    assert Image.open(io.BytesIO(polyglot)).format == "IM"  # what an unrestricted open makes of it
    assert image_format(polyglot) == "TIFF"
    assert load_image(polyglot).size == (160, 200)  # the TIFF's picture, not the IM header's 16x16


@pytest.mark.parametrize(
    "payload",
    [b"", b"hello", encode(halves(), "PPM"), encode(halves(), "TGA"), encode(halves(), "ICO"), b"\x89PNG\r\n\x1a\n"],
)
def test_image_format_refuses_what_load_image_refuses(payload):
    with pytest.raises(ImageError):
        image_format(payload)
    with pytest.raises(ImageError):
        load_image(payload)


# --- resize_and_crop ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [(640, 480), (480, 640), (256, 256), (224, 224), (1000, 3), (3, 1000), (5000, 1), (1, 1)]
)
def test_resize_and_crop_shape(size):
    array = resize_and_crop(Image.new("RGB", size, (10, 20, 30)), 256, 224)
    assert array.shape == (224, 224, 3)
    assert array.dtype == np.uint8
    assert array.flags.c_contiguous
    assert np.all(array == (10, 20, 30))


def test_resize_and_crop_other_sizes_and_modes():
    assert resize_and_crop(Image.new("L", (300, 200), 9), 160, 128).shape == (128, 128, 3)
    assert resize_and_crop(Image.new("RGBA", (300, 200)), 224, 224).shape == (224, 224, 3)
    with pytest.raises(ValueError):
        resize_and_crop(Image.new("RGB", (300, 200)), 200, 224)


@pytest.mark.parametrize("landscape", [True, False])
def test_centre_crop_keeps_the_centre(landscape):
    stripes = Image.new("RGB", (900, 300), BLUE)
    stripes.paste(RED, (0, 0, 300, 300))
    stripes.paste(GREEN, (300, 0, 600, 300))
    if not landscape:
        stripes = stripes.transpose(Image.Transpose.ROTATE_90)
    array = resize_and_crop(stripes, 256, 224)
    # The centre third maps to 256 of the resized 768 pixels, all of which the 224 crop lies inside.
    assert np.all(array == GREEN)


def test_matches_a_full_resize_then_crop():
    image = noise((300, 200)).resize((600, 400), Image.Resampling.BICUBIC)  # smooth-ish content
    array = resize_and_crop(image, 256, 224)
    full = image.resize((384, 256), Image.Resampling.BILINEAR)  # torchvision: Resize(256)
    reference = np.asarray(full.crop((80, 16, 304, 240)))  # CenterCrop(224)
    assert np.abs(array.astype(int) - reference).max() <= 1
