"""The service itself: the web page, health and Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from embedscope.serve import models as m
from embedscope.serve.deps import State

STATIC = Path(__file__).resolve().parents[1] / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/health", tags=["service"])
def health(state: State) -> m.Health:
    return m.Health(status="ok", collections=state.summaries(), writes_enabled=state.token is not None)


@router.get(
    "/metrics",
    tags=["service"],
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition"}},
)
def metrics(state: State) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
