"""The REST API: ``create_app(settings)`` builds it; ``optscribe serve`` runs it."""

from .main import create_app

__all__ = ["create_app"]
