"""One router per concern (FastAPI's "bigger applications" layout); `create_app` includes them in
`ROUTERS` order. A new concern (e.g. online experiments, projections) is a module here with its own
`router`, added to `ROUTERS`; its state goes on `ServerState` (embedscope/serve/state.py)."""

from embedscope.serve.routers import admin, experiments, items, projection, recommend, search, service

ROUTERS = [
    service.router,
    items.router,
    search.router,
    recommend.router,
    projection.router,
    experiments.router,
    admin.router,
]

__all__ = ["ROUTERS"]
