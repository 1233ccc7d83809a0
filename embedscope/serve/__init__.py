"""HTTP API and web page: `create_app(...)` or `embedscope serve`."""

from embedscope.serve.app import create_app

__all__ = ["create_app"]
