"""The web form: a page at ``/`` over the same job routes as the API (see ``routes``)."""

from __future__ import annotations

from .routes import STATIC, page_router, ui_router

__all__ = ["STATIC", "page_router", "ui_router"]
