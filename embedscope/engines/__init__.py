"""Where `Collection.embed` turns texts into vectors: in this process or on a Ray cluster.

An engine only encodes. Reading the items, deciding which ones are new or changed (incremental
embedding by content hash), fitting learning encoders, building the index and writing the version
through the store all stay in `Collection.embed`, the one write path for every engine.
"""

from embedscope.engines.base import ENGINES, Engine, create_engine

__all__ = ["ENGINES", "Engine", "create_engine"]
