"""Experiment tracking behind a small interface: MLflow in real runs, files or nothing in tests.

Importing this package does not import MLflow; :func:`make_tracker` loads it only when asked for.
"""

from fitad.tracking.base import (TRACKER_KINDS, DiskTracker, NullTracker, Tracker, flatten_params,
                                 make_tracker)

__all__ = ["TRACKER_KINDS", "DiskTracker", "NullTracker", "Tracker", "flatten_params", "make_tracker"]
