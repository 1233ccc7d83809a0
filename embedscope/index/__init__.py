"""Nearest-neighbour indexes behind one interface: exact (NumPy / SciPy sparse) and HNSW (usearch)."""

from embedscope.index.base import VectorIndex, create_index, load_index

__all__ = ["VectorIndex", "create_index", "load_index"]
