"""Search: one path from a query to hits, shared by the API, the CLI, the server and evaluation.

- `versions`: `LoadedVersion` and `CollectionReader`, the read interface the pipeline depends on
- `pipeline`: `SearchPipeline` (encode -> candidates with the filter inside -> fusion -> rerank -> hits)
- `recipe`: named search configurations fusing several versions ("hybrid"), stored with the collection
- `fusion`: fusion methods (RRF, convex combination) and score normalisations, chosen by name
- `rerank`: collapse repeated works, popularity/quality blend, MMR (shared with recommendations)
"""

from embedscope.search.base import Hit, SearchResult
from embedscope.search.fusion import FUSIONS, NORMALIZERS, Run, fuse
from embedscope.search.pipeline import Plan, QueryEncoder, SearchPipeline, encode_direct, lookup
from embedscope.search.recipe import Recipe, make_recipe
from embedscope.search.versions import CollectionReader, LoadedVersion

__all__ = [
    "FUSIONS",
    "CollectionReader",
    "LoadedVersion",
    "NORMALIZERS",
    "Hit",
    "Plan",
    "QueryEncoder",
    "Recipe",
    "Run",
    "SearchPipeline",
    "SearchResult",
    "encode_direct",
    "fuse",
    "lookup",
    "make_recipe",
]
