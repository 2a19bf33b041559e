"""Episode storage: the crash-safe zarr store, in-RAM loading, window sampling and normalisation."""

from robostack.data.schema import FeatureSpec, StoreInfo
from robostack.data.store import EpisodeStore, EpisodeWriter

__all__ = ["EpisodeStore", "EpisodeWriter", "FeatureSpec", "StoreInfo"]
