"""Retrieval quality, measured the same way on every backend through the VectorIndex interface.

* same-label precision@k, leave-one-out over the real classes (:mod:`.precision`);
* the share of neighbours from the query's sender, against random pairs (:mod:`.bias`);
* near-duplicate recall of altered copies of catalogue photos (:mod:`.duplicates`);
* recall@k of approximate search against exact search (:mod:`.recall`);
* all of them at once, with the settings and the machine (:mod:`.report`, what ``lookalike eval`` runs).

Measures over every item use one read of the catalogue (:class:`.neighbours.Snapshot`) and batched exact
k-NN (:func:`.neighbours.exact_neighbours`) instead of n index searches.
"""

from lookalike.evaluate.bias import FieldShareReport, default_bias_field, same_field_share
from lookalike.evaluate.duplicates import TRANSFORMS, DuplicateReport, duplicate_recall, transform_bytes
from lookalike.evaluate.environment import index_settings, machine_info
from lookalike.evaluate.holdout import holdout_split_by_field
from lookalike.evaluate.neighbours import Snapshot, exact_neighbours
from lookalike.evaluate.precision import NOT_CLASSES, PrecisionReport, default_ignore_labels, same_label_precision
from lookalike.evaluate.recall import recall_against_exact
from lookalike.evaluate.report import EvalOptions, evaluate_index, format_report

__all__ = [
    "NOT_CLASSES",
    "TRANSFORMS",
    "DuplicateReport",
    "EvalOptions",
    "FieldShareReport",
    "PrecisionReport",
    "Snapshot",
    "default_bias_field",
    "default_ignore_labels",
    "duplicate_recall",
    "evaluate_index",
    "exact_neighbours",
    "format_report",
    "holdout_split_by_field",
    "index_settings",
    "machine_info",
    "recall_against_exact",
    "same_field_share",
    "same_label_precision",
    "transform_bytes",
]
