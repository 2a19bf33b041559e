"""Episode storage: the crash-safe zarr store, in-RAM loading, window sampling and normalisation.

The store classes are imported lazily: inference code (the runtime, ROS nodes) uses the specs and statistics here
without paying for zarr's import, and runs where zarr is not installed."""

from typing import Any

from robostack.data.schema import FeatureSpec, StoreInfo

__all__ = ["EpisodeStore", "EpisodeWriter", "FeatureSpec", "StoreInfo"]


def __getattr__(name: str) -> Any:
    if name in ("EpisodeStore", "EpisodeWriter"):
        from robostack.data import store

        return getattr(store, name)
    raise AttributeError(f"module 'robostack.data' has no attribute '{name}'")
