"""Adaptation to a shop's own labels: a projection learned from the labelled items, applied to every vector.

:mod:`.projection` (the map, exactly invertible, recorded in the index), :mod:`.learn` (Fisher's
discriminant from the labels), :mod:`.reproject` (``lookalike adapt``: learn and re-project an index in
place, or undo), :mod:`.holdout` (the train/test split by a field's values).
"""

from lookalike.adapt.learn import AdaptError, class_directions, learn_projection
from lookalike.adapt.projection import Projection

__all__ = ["AdaptError", "Projection", "class_directions", "learn_projection"]
