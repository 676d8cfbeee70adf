"""The model's input: the ImageNet eval transform (shorter side, centre crop) on an RGB picture."""

from __future__ import annotations

import numpy as np
from PIL import Image

from lookalike.errors import ImageError
from lookalike.images.convert import to_rgb


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
