"""Tests for lookalike.images: every fixture is drawn with Pillow in memory, nothing is read from disk."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageFile

from lookalike.errors import ImageError
from lookalike.images import (
    DEFAULT_MAX_PIXELS,
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


def test_header_only_bomb_is_refused_before_decoding():
    data = png_header(8000, 6000)  # 48 MP; the pixel data is 16 bytes, so decoding would fail differently
    start = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        load_image(data)
    assert time.perf_counter() - start < 1.0
    assert str(caught.value) == "image too large: 8000x6000 pixels exceeds the limit of 40,000,000"


def test_huge_bomb_is_refused_quickly():
    data = png_header(30000, 30000)
    assert len(data) < 100
    pixel_limit = Image.MAX_IMAGE_PIXELS
    start = time.perf_counter()
    with pytest.raises(ImageError, match="image too large") as caught:
        load_image(data)
    assert time.perf_counter() - start < 1.0
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
