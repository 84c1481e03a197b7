"""The terminal side of the ``campaign`` command: its console, log lines, one-line
errors, and opening a run read-only for the commands that only look at it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler

console = Console()

QUIET_LIBRARIES = ("parsl", "zarr", "numcodecs", "asyncio", "matplotlib", "site_configs")


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool) -> None:
    """Rich log lines on a terminal; plain, unwrapped, timestamped lines otherwise (a
    Slurm job log, a pipe, a file), where Rich would hard-wrap at its width."""
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="%H:%M:%S"))
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    if not verbose:  # Parsl re-levels its own loggers on load: filter at the handler.
        # The engine reports every task failure in one line; Parsl's own account (with
        # tracebacks) stays in <run>/parsl/ and on the terminal with --verbose.
        handler.addFilter(lambda record: not record.name.startswith(QUIET_LIBRARIES)
                          or record.levelno >= (logging.CRITICAL if record.name.startswith(
                              "parsl") else logging.WARNING))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)


def fail(message: str) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def open_run(run_dir: Path) -> tuple[Any, Any]:
    """The run's ledger and store, read-only (no cut-back, no lock), or a one-line exit.

    Like ``campaign.report.open_run``, without importing ``campaign.report``: it imports
    ``campaign.spec`` and with it ``learners`` and torch (2 s of ``campaign status``)."""
    from campaign.ledger import Ledger, LedgerError
    from campaign.store import Store, StoreError

    if not (run_dir / "ledger.sqlite").is_file():
        fail(f"{run_dir} is not a campaign run directory (no ledger.sqlite)")
    try:
        ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    except LedgerError as error:
        fail(str(error))
    try:
        return ledger, Store(run_dir, ledger, read_only=True)
    except StoreError as error:
        ledger.close()
        fail(str(error))
