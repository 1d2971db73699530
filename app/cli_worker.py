"""The ``worker`` command: a Celery worker that runs jobs from the queue (the scale-out path).

Broker, store and limits come from the settings (see :mod:`app.jobs.celery_app`); the
number of pool processes is ``--concurrency``, else ``OPTSCRIBE_WORKER_CONCURRENCY``, else
the ``workers`` setting. Each pool process runs one job at a time, its solves in a child
process of its own.
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``worker`` to the CLI."""

    @app.command()
    def worker(
        concurrency: Annotated[
            int | None,
            typer.Option("--concurrency", "-c", min=1, help="Pool processes (default: from the settings)."),
        ] = None,
        pool: Annotated[
            str, typer.Option("--pool", help="Celery pool: prefork (default) or solo (one job, in process).")
        ] = "prefork",
        hostname: Annotated[
            str | None, typer.Option("--hostname", "-n", help="Worker node name (default: celery@host).")
        ] = None,
        log_level: Annotated[str, typer.Option("--log-level", help="debug, info, warning, error.")] = "info",
    ) -> None:
        """Start a Celery worker that runs queued jobs (needs Redis; see docker-compose.yml)."""
        from .jobs.celery_app import celery_app, configure

        cfg = configure()
        argv = [
            "worker",
            f"--concurrency={concurrency or cfg.concurrency}",
            f"--pool={pool}",
            f"--loglevel={log_level}",
            "--queues=optscribe",
            "--without-gossip",
            "--without-mingle",
        ]
        if hostname:
            argv.append(f"--hostname={hostname}")
        celery_app.worker_main(argv)
