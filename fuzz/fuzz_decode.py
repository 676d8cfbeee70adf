"""Fuzz the image decode path: bytes -> header check -> decode -> RGB -> the model's resize and crop.

Anything but the project's own ImageError is a crash (libFuzzer writes the input to
tests/hostile/found/decode-crash-*, and tests/test_hostile.py replays every file there).

    python fuzz/fuzz_decode.py [libFuzzer options] [corpus dirs]   # or: make fuzz (FUZZ_SECONDS=60)
"""

from __future__ import annotations

import sys
import warnings

import atheris

with atheris.instrument_imports():
    from PIL import Image

    Image.init()  # import every format plugin now, so their Python parsers are instrumented too
    from lookalike.errors import ImageError
    from lookalike.images import image_size_of, load_image, resize_and_crop

warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF and the like: warnings are not crashes

MAX_PIXELS = 4_000_000  # lower than the server's 40 M so the fuzzer spends its time on parsing, not pixels


def test_one_input(data: bytes) -> None:
    try:
        width, height = image_size_of(data)
        assert width >= 0 and height >= 0
    except ImageError:
        pass
    try:
        image = load_image(data, min_side=256, max_pixels=MAX_PIXELS)
    except ImageError as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)  # one clear line
        return
    assert image.mode == "RGB", image.mode
    try:
        pixels = resize_and_crop(image, 256, 224)
    except ImageError:
        return
    assert pixels.shape == (224, 224, 3), pixels.shape


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
