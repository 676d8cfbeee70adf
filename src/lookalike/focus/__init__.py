"""The focus stage: U²-Net-p salient-object masks, white background, crop to the product.

See :mod:`lookalike.focus.stage` for the recipe and :mod:`lookalike.focus.weights` for where the weights
come from (``python -m lookalike.focus`` fetches them into the cache).
"""

from lookalike.focus.stage import DEFAULT_RESOLUTION, Box, Focus, Focused, object_box, square_crop
from lookalike.focus.weights import u2netp_path

__all__ = ["DEFAULT_RESOLUTION", "Box", "Focus", "Focused", "object_box", "square_crop", "u2netp_path"]
