"""The limits one decode runs under, with the measurements behind each: input bytes, pixels, memory, CPU time
and a JPEG's scans. :func:`lookalike.images.load_image` takes most of them as arguments; these are the defaults."""

from __future__ import annotations

DEFAULT_MAX_BYTES: int = 30 * 1024 * 1024

# Pixels one decode may produce: the whole picture for most formats, and for a JPEG the DCT-scaled picture
# libjpeg actually makes (see MAX_JPEG_PIXELS). 40 megapixels of RGB take 160 MB in Pillow's layout.
DEFAULT_MAX_PIXELS: int = 40_000_000

# Pixels a JPEG's header may claim, whatever the scale it is decoded at. A JPEG drafted to 1/8 for the model
# costs little beyond reading its data (an 8000x6000 phone photo of 2.6 MB: 50 ms of CPU and 4 MB baseline;
# 0.35 s and 141 MB progressive, its coefficients; bench/bench_big_jpeg.py), so a JPEG is judged by the
# pixels decoded (max_pixels), the memory (DEFAULT_MAX_DECODE_BYTES, with a progressive JPEG's full-size
# coefficients) and the work of its scans (MAX_JPEG_COEFFICIENT_PASSES), not by its header's size. This
# ceiling is only for sizes no camera makes: 120 megapixels is above the largest full-resolution phone photo
# (108 MP, 12000x9000) and below Pillow's own guard, which refuses 179 megapixels (twice
# Image.MAX_IMAGE_PIXELS) while opening any file (a 200 MP sensor's 16320x12240 photos too) and warns with a
# DecompressionBombWarning from 89.5. A header-only 12000x10000 JPEG decodes at 1/8 in 25-35 ms and 8 MB.
MAX_JPEG_PIXELS: int = 120_000_000

# CPU seconds (of the decoding thread, so a busy server does not make good images fail) for opening and
# decoding one image. On an AMD EPYC server core a 40-megapixel baseline JPEG decodes in 0.3 s at full size
# (an 8000x6000 one at 1/8 in 0.05 s, progressive in 0.35 s) and a 47 MB 24-megapixel PNG in 0.8 s (the 30 MB
# input limit keeps real PNGs below that); the costliest JPEG the scan limits let through (100 full passes
# over 36 megapixels) takes 2.5-2.9 s.
DEFAULT_MAX_DECODE_SECONDS: float = 3.0

_MB = 1024 * 1024

# Bytes one decode may hold at its peak: the decoded image in Pillow's layout, the decoder's own buffers and
# the conversion to RGB. 192 MiB lets an ordinary 40-megapixel RGB JPEG or PNG through at full size (Pillow
# keeps RGB in 4 bytes a pixel: 157 MiB with the decoder's state), any baseline JPEG drafted to 1/8 for the
# model, and a progressive one of up to about 64 megapixels in 4:2:0 (an 8000x6000 one: 144 MiB, nearly all
# libjpeg's coefficients, which stay at full size); it refuses a 40-megapixel float TIFF (355 MiB: 4 bytes a
# sample, then 8-bit grey, then RGB), RGBA PNG (309 MiB with its white background) or progressive JPEG at full
# size (271 MiB with libjpeg's coefficients), and WebP above about 12 megapixels (libwebp's buffers take 16
# bytes a pixel). A handful of requests at once then stays within a gigabyte.
DEFAULT_MAX_DECODE_BYTES: int = 192 * _MB

# Scans a JPEG may have. Each progressive scan is one more pass over the image's whole coefficient buffer, so
# a few thousand tiny scans of a flat 36-megapixel picture (387 KB) cost over a minute of CPU. Encoders write
# 1 scan for baseline and about 10 for progressive (libjpeg's default script: 10 for colour, 6 for grey;
# custom scripts rarely pass 20). libtiff refuses JPEG data with more than 100 scans
# (LIBTIFF_JPEG_MAX_ALLOWED_SCAN_NUMBER), NVIDIA nvImageCodec more than 256, and libjpeg-turbo's djpeg offers
# -maxscans for the same attack; 100 is libtiff's choice, far above any real encoder.
MAX_JPEG_SCANS: int = 100

# Coefficients all of a JPEG's scans may pass over together: scans x the coefficients of the whole image, at
# full size (DCT scaling only makes the last step, the inverse DCT, cheaper). 100 scans of 40 megapixels of
# grey: the costliest JPEG the scan limit let through while every JPEG had to fit in max_pixels at full size
# (about 3 s of CPU, the decode deadline), so that larger JPEGs do not raise that worst case. Real files stay
# far below it: a progressive 8000x6000 4:2:0 photo has 10 scans of 72 million coefficients, 0.7 billion.
MAX_JPEG_COEFFICIENT_PASSES: int = MAX_JPEG_SCANS * 40_000_000

# Pillow hands decoders this many bytes a read (instead of 64 KB), so the deadline is looked at often: every
# few tens of progressive scans at worst, and the reads cost nothing next to decoding.
_DECODE_BLOCK = 4096


def _format_bytes(size: int) -> str:
    """31.2 MB, 30 MB, or bytes below a megabyte, for error messages."""
    if size < _MB:
        return f"{size:,} bytes"
    return f"{size / _MB:.1f}".removesuffix(".0") + " MB"
