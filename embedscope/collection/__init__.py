"""The collection: the public facade (`Collection`) over the modules that each own one job.

`from embedscope.collection import Collection` (or `from embedscope import Collection`).
"""

from embedscope.collection.facade import HYBRID, Collection
from embedscope.collection.opening import default_root

__all__ = ["HYBRID", "Collection", "default_root"]
