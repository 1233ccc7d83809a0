"""Collections and their items: what is served, a collection's versions, recipes and display, one item."""

from __future__ import annotations

from fastapi import APIRouter, Request

from embedscope.search.base import Hit
from embedscope.serve import models as m
from embedscope.serve.deps import State
from embedscope.serve.present import hit_out

router = APIRouter(prefix="/api/collections", tags=["read"])


@router.get("")
def list_collections(state: State) -> list[m.CollectionSummary]:
    return state.summaries()


@router.get("/{name}")
def collection_info(name: str, state: State) -> m.CollectionInfo:
    """Items, metadata fields, versions, search recipes, and how the page shows and filters hits."""
    served = state.get(name)
    info = served.reader.info()
    return m.CollectionInfo(**info, display=served.display())


@router.get("/{name}/items/{item_id:path}")
def get_item(name: str, item_id: str, request: Request, state: State) -> m.ItemOut:
    served = state.get(name)
    request.state.record.update(collection=name, item=item_id)
    item = served.reader.get(item_id)
    h = hit_out(Hit(item.id, 0.0, item.text, item.metadata), served.fields())
    return m.ItemOut(id=item.id, text=item.text, metadata=item.metadata, title=h.title)
