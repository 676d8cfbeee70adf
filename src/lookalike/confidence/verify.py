"""Geometric verification: do two photos show the same picture, cropped, rotated or re-encoded?

Embedding scores cannot tell a tight crop of a dress from a merely similar dress (the two overlap, see
docs/benchmarks.md "Match tiers"); local features can. ORB keypoints of both images are matched with Lowe's
ratio test and a RANSAC homography counts the matches that agree on one geometry: a copy keeps hundreds,
distinct items keep a handful. It costs ~10 ms a pair, so tiers ask it only about scores in the ambiguous band.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError
from lookalike.images import DEFAULT_MAX_BYTES, load_image

FEATURES = 500
SHORT_SIDE = 400
"""Images are downscaled to this shorter side first: features of a 3,000 px photo are no better, only slower."""
RATIO = 0.8
RANSAC_PIXELS = 5.0
MIN_MATCHES = 8
MIRROR_UNLESS = 100
"""The mirror image is matched too unless the picture as it is already has this many agreeing inliers (more
than any calibration has asked for: a copy as it is needs no second look)."""
THUMB = 64
"""Pixels on the shorter side of the picture kept for the agreement check: one size for every image, so a
half-size copy compares at the same resolution as its original."""
AGREEMENT = 0.6
SAME_PHOTO = 0.9
"""``AGREEMENT`` for a query: a shopper's own photo of the item, or the shop's photo altered, agree at 0.6 and
up. ``SAME_PHOTO`` for two catalogue images to be one photo (near-duplicates): altered copies agree at 0.93
and up (5th percentile, bench/tiers.py), two garments on one wall at 0.6-0.87.

Aligned by the homography, two copies of one photo agree pixel for pixel over the middle of the picture
(normalised cross-correlation of each colour channel); two different garments shot on one photographer's
wall share only the wall, which the homography aligns as well, so the correlation over the middle - in
colour: a red and a green print of one shirt are alike in grey - is what tells them apart."""


@dataclass
class Features:
    """ORB keypoints and descriptors of one image (computed once, matched against several candidates)."""

    points: np.ndarray
    descriptors: np.ndarray | None
    thumb: np.ndarray | None = None
    """The picture (RGB), ``THUMB`` pixels on its shorter side: what two aligned pictures are compared on."""
    thumb_scale: float = 1.0
    """Thumbnail pixels per keypoint-coordinate pixel."""
    mirror: Features | None = None
    """The features of the image flipped left to right: ORB is not mirror-invariant, and a mirrored copy is
    the most common alteration of a product photo there is."""


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether OpenCV is installed (without it, tiers rest on scores alone); asked once."""
    try:
        _cv2()
    except ImportError:
        return False
    return True


def _cv2() -> Any:
    import cv2

    return cv2


def features_of_bytes(data: bytes, mirrored: bool = False) -> Features:
    """The features of encoded image bytes, decoded by lookalike's one guarded decode (never OpenCV's)."""
    return features(load_image(data, min_side=SHORT_SIDE), mirrored)


def features(image: Image.Image, mirrored: bool = False) -> Features:
    """The ORB features of a decoded image (at most ``SHORT_SIDE`` on its shorter side); ``mirrored`` adds
    those of its mirror image, so that one side of a comparison covers both orientations."""
    scale = SHORT_SIDE / min(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    rgb = np.asarray(image.convert("RGB"))
    grey = np.asarray(image.convert("L"))
    found = _orb(grey, rgb)
    if mirrored:
        found.mirror = _orb(np.ascontiguousarray(grey[:, ::-1]), np.ascontiguousarray(rgb[:, ::-1]))
    return found


def _orb(grey: np.ndarray, rgb: np.ndarray) -> Features:
    cv2 = _cv2()
    if min(grey.shape) < 16:
        return Features(np.zeros((0, 2), np.float32), None)
    keypoints, descriptors = cv2.ORB_create(nfeatures=FEATURES).detectAndCompute(grey, None)
    points = np.asarray([point.pt for point in keypoints], dtype=np.float32).reshape(-1, 2)
    scale = THUMB / min(grey.shape)
    thumb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return Features(points, descriptors, thumb, scale)


def inliers(a: Features, b: Features, agreement: float = AGREEMENT) -> int:
    """Matches of ``a`` (or of its mirror image, when it has one) and ``b`` consistent with one homography
    under which the two pictures agree at least ``agreement`` (0 when they do not)."""
    found = _inliers(a, b, agreement)
    if a.mirror is None or found >= MIRROR_UNLESS:
        return found
    return max(found, _inliers(a.mirror, b, agreement))


def _inliers(a: Features, b: Features, agreement: float) -> int:
    count, agreed = match(a, b)
    return count if agreed >= agreement else 0


def match(a: Features, b: Features) -> tuple[int, float]:
    """(inliers of the RANSAC homography between ``a`` and ``b``, agreement of the aligned pictures)."""
    if a.descriptors is None or b.descriptors is None or len(a.points) < MIN_MATCHES or len(b.points) < MIN_MATCHES:
        return 0, 0.0
    cv2 = _cv2()
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [pair[0] for pair in pairs if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance]
    if len(good) < MIN_MATCHES:
        return 0, 0.0
    source = a.points[[match.queryIdx for match in good]]
    target = b.points[[match.trainIdx for match in good]]
    homography, mask = cv2.findHomography(source, target, cv2.RANSAC, RANSAC_PIXELS)
    if mask is None or homography is None:
        return 0, 0.0
    return int(mask.sum()), _agreement(a, b, homography)


def _agreement(a: Features, b: Features, homography: np.ndarray) -> float:
    """Normalised cross-correlation of ``a``'s picture and ``b``'s warped onto it, over the middle 60 % of
    ``a`` where the warp lands (0 when too little of it does)."""
    if a.thumb is None or b.thumb is None:
        return 0.0
    cv2 = _cv2()
    into_a, into_b = np.diag([a.thumb_scale, a.thumb_scale, 1.0]), np.diag([b.thumb_scale, b.thumb_scale, 1.0])
    to_b = into_b @ homography @ np.linalg.inv(into_a)  # a's thumb coordinates -> b's thumb coordinates
    height, width = a.thumb.shape[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpPerspective(b.thumb, to_b, (width, height), flags=flags).astype(np.float32)
    ones = np.ones(b.thumb.shape[:2], np.uint8)
    landed = cv2.warpPerspective(ones, to_b, (width, height), flags=flags) > 0
    middle = np.zeros_like(landed)
    middle[round(0.2 * height) : round(0.8 * height), round(0.2 * width) : round(0.8 * width)] = True
    region = landed & middle
    if region.sum() < 0.3 * middle.sum():
        return 0.0
    x, y = a.thumb[region].astype(np.float32), warped[region]  # (pixels, 3)
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    energy = np.sqrt((x * x).sum(axis=0) * (y * y).sum(axis=0))
    return float(np.mean(np.where(energy > 0, (x * y).sum(axis=0) / np.maximum(energy, 1e-9), 0.0)))


def features_of_location(location: str | None, mirrored: bool = False) -> Features | None:
    """The features of a local catalogue image (remembered: the same items come back query after query)."""
    if not location or "://" in location:
        return None
    path = Path(location)
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file() or stat.st_size > DEFAULT_MAX_BYTES:
        return None
    return _features_of_file(str(path), stat.st_mtime_ns, stat.st_size, mirrored)


@lru_cache(maxsize=1024)
def _features_of_file(path: str, mtime_ns: int, size: int, mirrored: bool) -> Features | None:
    """About 40 KB each (500 keypoints and a 64 px thumbnail, twice that with the mirror image): the cache holds
    40-80 MB at most; a changed file is a new key."""
    try:
        return features_of_bytes(Path(path).read_bytes(), mirrored)
    except (OSError, LookalikeError):
        return None
