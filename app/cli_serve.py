"""The ``serve`` command: run the REST API with uvicorn.

Host and port default to ``OPTSCRIBE_API_HOST`` / ``OPTSCRIBE_API_PORT``; everything else
the API needs comes from the same settings (see ``app.settings``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the CLI."""

    @app.command()
    def serve(
        host: Annotated[
            str | None, typer.Option("--host", help="Address to listen on (default: OPTSCRIBE_API_HOST).")
        ] = None,
        port: Annotated[
            int | None,
            typer.Option("--port", min=0, max=65535, help="Port to listen on (default: OPTSCRIBE_API_PORT)."),
        ] = None,
        log_level: Annotated[
            str, typer.Option("--log-level", help="uvicorn's log level: debug, info, warning, error.")
        ] = "info",
        data_dir: Annotated[
            Path | None,
            typer.Option("--data-dir", help="Directory of the job store (default: OPTSCRIBE_DATA_DIR)."),
        ] = None,
        workers: Annotated[
            int | None,
            typer.Option("--workers", min=0, help="Embedded job workers (default: OPTSCRIBE_WORKERS)."),
        ] = None,
    ) -> None:
        """Start the REST API, its docs (/docs) and the web form (/), with embedded job workers.

        Jobs are kept in SQLite under --data-dir and run by --workers worker processes.

        `optscribe settings` lists every setting."""
        import uvicorn

        from .api.main import create_service_app
        from .settings import get_settings

        settings = get_settings()
        changes: dict[str, object] = {}
        if data_dir is not None:
            changes["data_dir"] = data_dir
        if workers is not None:
            changes["workers"] = workers
        if changes:
            settings = settings.model_copy(update=changes)
        uvicorn.run(
            create_service_app(settings),
            host=host or settings.api_host,
            port=settings.api_port if port is None else port,
            log_level=log_level,
            server_header=False,
        )
