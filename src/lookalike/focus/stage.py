"""The focus stage: find the product in a photo, paint the rest white, and crop to it on a white square.

Between decoding and embedding, so that neighbours follow the item rather than the floor or the wall it was
photographed on. The mask is U²-Net-p's salient-object map, with the U²-Net project's own recipe: the whole
photo squashed to ``resolution`` x ``resolution`` (no aspect kept, no crop), divided by its maximum, ImageNet
mean/std; the fused output min-max normalised per photo and resized back to the photo's size. Then:

* every pixel where the mask is below ``threshold`` becomes white (``matte="hard"``, the default), or is
  blended towards white by ``1 - mask`` (``"soft"``). Measured on the clothing catalogue (Lite2, int8 masks at
  160): hard 0.708 precision@10 and 0.212 same-sender share against soft's 0.697 and 0.220, since a soft
  matte keeps a veil of the floor wherever the network half-believes it is product;
* the object box is where the mask is at least ``threshold``; the crop is that box grown by ``margin`` of its
  longer side on every side and made square around its centre; what lies outside the photo is white;
* the corners a rotation (or a skewed scan) filled with one flat colour are not scene: the network sees such a
  photo as a picture lying on a white card, the whole tilted rectangle salient, and finds nothing inside it
  (near-duplicate recall@1 of 10-degree rotated copies, Lite2: 0.67 on 60 clothing photos). So the network
  looks only at the largest upright rectangle free of that fill (:func:`scene_region`), and the mask is zero
  outside it;
* a photo where nothing stands out is returned unchanged: when the network's strongest response (before the
  min-max normalisation, which would stretch noise to a full-range mask) is below ``min_peak``, or when the
  box covers less than ``min_box`` of the photo.

``precision="int8"`` runs an 8-bit copy of the network (:mod:`lookalike.focus.int8`): 2.2-2.5x faster, mask
IoU 0.99 on average with the fp32 mask at the same resolution.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.errors import ModelError
from lookalike.focus.int8 import Calibration
from lookalike.focus.weights import sha256_of, symbolic_model, u2netp_path
from lookalike.images import to_rgb

FOCUS_VERSION = "2"
"""Bump when the recipe changes in a way that changes outputs, so an index records which one made it."""

DEFAULT_RESOLUTION = 160
"""Chosen by ``bench/bench_focus.py`` (100 clothing photos, 2-core EPYC, fp32): mask IoU with the 320x320 mask
0.859 / 0.893 / 0.927 / 0.941 at 96 / 128 / 160 / 192, the worst tenth of photos below 0.56 / 0.51 / 0.82 /
0.87, for 26 / 46 / 67 / 93 ms a photo (320: 243 ms). 160 keeps the tail close to 192's for 30 % less time;
below it the tail falls apart. int8 at 192 agrees as well as fp32 at 192 for the time of fp32 at 128."""
RESOLUTIONS = (96, 128, 160, 192, 224, 256, 288, 320)
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
WHITE = (255, 255, 255)

Box = tuple[int, int, int, int]
"""(left, top, right, bottom) in the photo's pixels, right and bottom exclusive, as PIL's ``crop`` takes."""


@dataclass(frozen=True)
class Focused:
    """What the focus stage made of one photo."""

    image: Image.Image
    """The white-background square crop, or the photo itself (the same object) when nothing was found."""
    box: Box | None
    """The object: the bounding box of mask >= threshold, inside the photo; ``None`` when nothing was found."""
    crop: Box | None
    """The square region of the photo that ``image`` shows (the box, its margin, squared); it may reach past
    the photo's edges, where ``image`` is white."""
    peak: float
    """The network's strongest response (0..1) before normalisation: how clearly something stood out."""

    @property
    def found(self) -> bool:
        return self.box is not None


class Focus:
    """U²-Net-p salient-object masks, and the white-background crop made from them.

    ``weights`` is an ONNX file (default: :func:`~lookalike.focus.weights.u2netp_path`, the verified
    shipped file, or ``LOOKALIKE_U2NETP``); ``threads`` ONNX Runtime threads (0: one per core);
    ``precision="int8"`` runs an 8-bit copy (see :mod:`lookalike.focus.int8`), quantized and cached on first
    use from ``calibration`` (default: 50 clothing photos if the data set is here, else synthetic ones).
    Calls are thread-safe (one ONNX Runtime session, which allows concurrent runs).
    """

    def __init__(
        self,
        weights: Path | None = None,
        *,
        resolution: int = DEFAULT_RESOLUTION,
        threads: int = 0,
        threshold: float = 0.5,
        margin: float = 0.04,
        matte: str = "hard",
        min_box: float = 0.01,
        min_peak: float = 0.1,
        batch: int = 16,
        precision: str = "fp32",
        calibration: Calibration | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if not (isinstance(resolution, int) and 32 <= resolution <= 1024 and resolution % 32 == 0):
            raise ValueError(
                f"resolution must be a multiple of 32 from 32 to 1024 (e.g. {RESOLUTIONS}), not {resolution}"
            )
        if precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be fp32 or int8, not {precision!r}")
        if matte not in ("hard", "soft"):
            raise ValueError(f"matte must be hard or soft, not {matte!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be between 0 and 1, not {threshold}")
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be between 0 and 1, not {margin}")
        self.weights = Path(weights) if weights is not None else u2netp_path(cache_dir)
        self.resolution = resolution
        self.threads = threads
        self.threshold = threshold
        self.matte = matte
        self.margin = margin
        self.min_box = min_box
        self.min_peak = min_peak
        self.batch = max(1, batch)
        self.precision = precision
        self._sha256 = sha256_of(self.weights)
        self.model_path = self.weights
        if precision == "int8":
            from lookalike.focus.int8 import cached_int8, default_calibration

            self.model_path = cached_int8(
                self.weights, self._sha256, resolution, self.prepare, calibration or default_calibration, cache_dir
            )
        self._model_sha256 = sha256_of(self.model_path)
        self._session = _session(self.model_path, threads)
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name

    def descriptor(self) -> dict[str, Any]:
        """What an index records about the stage, so vectors made with another focus are told apart."""
        return {
            "name": "u2netp",
            "version": FOCUS_VERSION,
            "weights": self._sha256[:16],
            "resolution": self.resolution,
            "threshold": self.threshold,
            "matte": self.matte,
            "margin": self.margin,
            "min_box": self.min_box,
            "min_peak": self.min_peak,
            "precision": self.precision,
            **self._int8_descriptor(),
        }

    def _int8_descriptor(self) -> dict[str, Any]:
        if self.precision != "int8":
            return {}
        from lookalike.focus.int8 import RECIPE, calibration_tag

        return {
            "int8_weights": self._model_sha256[:16],
            "calibration": calibration_tag(self.model_path),
            "quantization": RECIPE,
        }

    # The mask.

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One photo as the network's (3, r, r) float32 input: squashed to r x r, / its max, mean/std."""
        small = to_rgb(image).resize((self.resolution, self.resolution), Image.Resampling.LANCZOS, reducing_gap=3.0)
        pixels = np.asarray(small, dtype=np.float32)
        pixels = pixels * (1.0 / max(float(pixels.max()), 1.0))  # a black photo stays black instead of NaN
        return np.ascontiguousarray(((pixels - MEAN) / STD).transpose(2, 0, 1))

    def predict(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A prepared (n, 3, r, r) batch to (n, r, r) min-max normalised masks and the n raw peaks."""
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ModelError(f"expected a (n, 3, h, w) batch, got {batch.shape}")
        outputs = []
        for start in range(0, len(batch), self.batch):
            (out,) = self._session.run([self._output], {self._input: batch[start : start + self.batch]})
            outputs.append(out[:, 0])
        raw = np.concatenate(outputs) if outputs else np.zeros((0, *batch.shape[2:]), dtype=np.float32)
        low = raw.min(axis=(1, 2), keepdims=True)
        high = raw.max(axis=(1, 2), keepdims=True)
        span = high - low
        masks = np.where(span > 1e-6, (raw - low) / np.maximum(span, 1e-6), 0.0).astype(np.float32)
        return masks, high[:, 0, 0].astype(np.float32)

    def small_masks(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """Masks at the network's resolution, (n, r, r) in 0..1, of each photo's :func:`scene_region`, and
        the raw peaks."""
        small, peaks, _ = self._small_masks(images)
        return small, peaks

    def _small_masks(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray, list[Box]]:
        if not images:
            r = self.resolution
            return np.zeros((0, r, r), dtype=np.float32), np.zeros(0, dtype=np.float32), []
        regions = [scene_region(image) for image in images]
        crops = [
            image if region == (0, 0, *image.size) else image.crop(region)
            for image, region in zip(images, regions, strict=True)
        ]
        small, peaks = self.predict(np.stack([self.prepare(crop) for crop in crops]))
        return small, peaks, regions

    def mask(self, images: Sequence[Image.Image]) -> list[np.ndarray]:
        """One float32 (height, width) mask in 0..1 per photo, at the photo's own size (run as one batch)."""
        small, _, regions = self._small_masks(images)
        return [
            np.asarray(_matte(m, image.size, region), dtype=np.float32) / 255.0
            for m, image, region in zip(small, images, regions, strict=True)
        ]

    # The crop.

    def detect(self, images: Sequence[Image.Image]) -> list[Focused]:
        """The focused photo, object box and crop for each photo (the masks run as one batch)."""
        small, peaks, regions = self._small_masks(images)
        return [
            self._focus(image, m, float(p), region)
            for image, m, p, region in zip(images, small, peaks, regions, strict=True)
        ]

    def focus(self, image: Image.Image) -> Focused:
        return self.detect([image])[0]

    def apply(self, image: Image.Image) -> Image.Image:
        """The photo on white, cropped to its object on a square; unchanged if nothing stands out."""
        return self.focus(image).image

    def apply_batch(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        return [focused.image for focused in self.detect(images)]

    def _focus(self, image: Image.Image, small: np.ndarray, peak: float, region: Box) -> Focused:
        unchanged = Focused(image, None, None, peak)
        if peak < self.min_peak:
            return unchanged
        width, height = image.size
        matte = _matte(small, image.size, region)
        box = object_box(np.asarray(matte), self.threshold)
        if box is None or (box[2] - box[0]) * (box[3] - box[1]) < self.min_box * width * height:
            return unchanged
        crop = square_crop(box, self.margin)
        rgb = to_rgb(image)
        if self.matte == "hard":
            level = round(self.threshold * 255)
            matte = matte.point(lambda value: 255 if value >= level else 0)
        # Outside the photo PIL's crop is black for the picture and 0 for the matte: white after compositing.
        out = Image.composite(rgb.crop(crop), Image.new("RGB", (crop[2] - crop[0],) * 2, WHITE), matte.crop(crop))
        return Focused(out, box, crop, peak)


FILL_PROBE = 96
"""Side of the thumbnail rotation fill is looked for in (a few milliseconds less than the photo itself)."""
FILL_TOLERANCE = 4
"""Levels (0-255, per channel) within which a pixel counts as the corners' fill colour (JPEG and resizing
blur a flat fill by a few levels)."""
MAX_FULL_LINES = 0.1
"""Share of rows (or columns) that may be fill from edge to edge: more, and the flat colour is the photo's
own background (a product on white), which is left alone."""


def scene_region(image: Image.Image) -> Box:
    """The largest centred upright rectangle of ``image`` free of rotation fill; the whole photo if it has none.

    Rotation fill: at least three corners share one flat colour, and the runs of that colour from the edges
    leave photo in (nearly) every row and every column, so the colour is wedged into the corners rather than
    around an object (a product on a white background has whole rows or columns of white, and is left
    alone). Of the rectangles centred on the photo, the largest holding no fill pixel of the probe is kept
    (two-dimensional prefix sums: every candidate is checked at once).
    """
    width, height = image.size
    whole = (0, 0, width, height)
    probe = np.asarray(to_rgb(image).resize((FILL_PROBE, FILL_PROBE), Image.Resampling.BILINEAR), dtype=np.int16)
    corners = np.array([probe[0, 0], probe[0, -1], probe[-1, 0], probe[-1, -1]])
    colour = np.median(corners, axis=0)
    if (np.abs(corners - colour).max(axis=1) <= FILL_TOLERANCE).sum() < 3:
        return whole
    flat = np.abs(probe - colour).max(axis=2) <= FILL_TOLERANCE
    if flat.all(axis=1).mean() > MAX_FULL_LINES or flat.all(axis=0).mean() > MAX_FULL_LINES:
        return whole
    n = FILL_PROBE
    sums = np.zeros((n + 1, n + 1), dtype=np.int32)
    sums[1:, 1:] = flat.cumsum(axis=0).cumsum(axis=1)
    inset = np.arange(n // 2)
    ty, tx = inset[:, None], inset[None, :]  # rows [ty, n - ty), columns [tx, n - tx)
    inside = sums[n - ty, n - tx] - sums[ty, n - tx] - sums[n - ty, tx] + sums[ty, tx]
    if inside[0, 0] == 0:
        return whole
    area = np.where(inside == 0, (n - 2 * ty) * (n - 2 * tx), 0)
    best_y, best_x = np.unravel_index(int(np.argmax(area)), area.shape)
    if area[best_y, best_x] < 0.25 * n * n:  # not a rotated photo's shape: look at all of it
        return whole
    x0, y0, x1, y1 = int(best_x), int(best_y), n - int(best_x), n - int(best_y)
    return (x0 * width // n, y0 * height // n, -(-x1 * width // n), -(-y1 * height // n))


def object_box(matte: np.ndarray, threshold: float = 0.5) -> Box | None:
    """The bounding box of ``matte >= threshold`` (a uint8 0..255 or float 0..1 array), or ``None`` if empty."""
    level = threshold * 255.0 if matte.dtype == np.uint8 else threshold
    rows = np.flatnonzero(matte.max(axis=1) >= level)
    if rows.size == 0:
        return None
    cols = np.flatnonzero(matte.max(axis=0) >= level)
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def square_crop(box: Box, margin: float) -> Box:
    """``box`` grown by ``margin`` of its longer side on each side, then squared around its centre."""
    left, top, right, bottom = box
    longer = max(right - left, bottom - top)
    side = longer + 2 * round(margin * longer)
    x0 = (left + right - side) // 2
    y0 = (top + bottom - side) // 2
    return x0, y0, x0 + side, y0 + side


def _matte(small: np.ndarray, size: tuple[int, int], region: Box) -> Image.Image:
    """The network's mask of ``region`` as an 8-bit matte of the whole photo (zero outside the region)."""
    if region == (0, 0, *size):
        return _upscale(small, size)
    matte = Image.new("L", size, 0)
    matte.paste(_upscale(small, (region[2] - region[0], region[3] - region[1])), region[:2])
    return matte


def _upscale(small: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A 0..1 float mask to an 8-bit matte ("L") of ``size``, bilinear."""
    matte = Image.fromarray(np.clip(np.rint(small * 255.0), 0, 255).astype(np.uint8))
    return matte.resize(size, Image.Resampling.BILINEAR)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        model = symbolic_model(path).SerializeToString()
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except ModelError:
        raise
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"cannot load U²-Net-p from {path}: {exc}") from exc
