"""Pieces several commands share: the --db option, migration and warning lines, signal handling."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from edge_embed.cli.wording import cli_text
from edge_embed.config import current
from edge_embed.errors import Phrase


def reranker_option(command):
    """``--reranker NAME|PATH`` (env EDGE_EMBED_RERANKER): the same words on every command."""
    return click.option(
        "--reranker", envvar="EDGE_EMBED_RERANKER", show_envvar=True, default=None, metavar="NAME|PATH",
        help="The reranker: a catalog name (`edge-embed models`) or a Qwen3-Reranker GGUF with "
        "its classifier head. Default: qwen3-reranker-0.6b.",
    )(command)


def db_option(command):
    """``--db PATH`` (env EDGE_EMBED_DB; default: index.db in the user's data directory)."""
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="The index file. Default: $EDGE_EMBED_DB, else index.db in your data "
        f"directory ({current().default_db}).",
    )(command)


def report_migration(step: int, total: int, name: str) -> None:
    """A writer's ``on_migration``: one line on stderr per migration of an index an older
    edge-embed wrote, so a start that rewrites every vector does not look like a hang."""
    click.echo(f"upgrading the index ({step}/{total}): {name}", err=True)


class _StderrHandler(logging.Handler):
    """Writes through click so CliRunner and NO_COLOR-aware terminals see it."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {cli_log_message(record)}", err=True)


def cli_log_message(record: logging.LogRecord) -> str:
    """A library record's message in the CLI's words: a Phrase (an upgrade to apply), or
    Phrases among its arguments, said with flags and commands (``wording.cli_text``)."""
    if isinstance(record.args, tuple):
        args = tuple(cli_text(arg) if isinstance(arg, Phrase) else arg for arg in record.args)
    else:
        args = record.args
    message = cli_text(record.msg) if isinstance(record.msg, Phrase) else str(record.msg)
    return message % args if args else message


def warnings_to_stderr(quiet: bool = False) -> None:
    """Library warnings (truncated inputs, lossy decoding) as 'warning: ...' on stderr."""
    logger = logging.getLogger("edge_embed")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.ERROR if quiet else logging.WARNING)


def plain_logging() -> None:
    """Log records of uvicorn, asyncio and the MCP SDK as plain lines on stderr.

    With no handler on the root logger, the MCP SDK installs rich's, which imports a module
    on the first traceback it shows. When a connection flood holds every file descriptor,
    asyncio reports the failed ``accept`` through that handler, the import fails inside
    asyncio's exception handler, and the server died (tests/test_serve_limits.py). The
    standard handler never raises from a write it cannot make.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_not_said_already)
        root.addHandler(handler)


def _not_said_already(record: logging.LogRecord) -> bool:
    """edge-embed's own records are said by ``warnings_to_stderr``'s handler; the root
    handler adds only their tracebacks."""
    return record.name.split(".")[0] != "edge_embed" or record.exc_info is not None


@contextmanager
def handling_signal(signum: int, handler: Callable) -> Iterator[None]:
    """``handler`` for ``signum`` while the block runs, the previous one after. Python
    takes signal handlers on the main thread only: elsewhere (a test's runner thread) the
    block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, previous)
