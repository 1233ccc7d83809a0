"""The service itself: the web page, the API docs page, health and Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, Response

from embedscope.serve import models as m
from embedscope.serve.deps import State

STATIC = Path(__file__).resolve().parents[1] / "static"
#: Swagger UI's files, served from /static/swagger-ui by the app: FastAPI's own /docs loads them from a
#: CDN, which leaves the page blank on a machine with no network (FastAPI's "Self-hosting JavaScript
#: and CSS for docs"; the files come with the swagger-ui-bundle-v2 package, Swagger UI 5, Apache-2.0)
SWAGGER_UI = Path(str(swagger_ui_bundle.swagger_ui_path))
SWAGGER_STATIC = "/static/swagger-ui"
router = APIRouter()


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/docs", include_in_schema=False)
def docs(request: Request) -> HTMLResponse:
    """Swagger UI over /openapi.json, every asset from this server."""
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        oauth2_redirect_url="/docs/oauth2-redirect",
        swagger_js_url=f"{SWAGGER_STATIC}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_STATIC}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_STATIC}/favicon-32x32.png",
    )


@router.get("/docs/oauth2-redirect", include_in_schema=False)
def docs_oauth2_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


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
