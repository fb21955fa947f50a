"""The ``edge-embed`` command: a thin click layer over the library.

Each command family lives in its own module and is imported only when used, so
``edge-embed --help`` stays fast (llama.cpp is imported by the commands that embed).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from edge_embed import __version__
from edge_embed.cli.wording import cli_message
from edge_embed.config import Config, using
from edge_embed.errors import EdgeEmbedError

COMMANDS = {
    "embed": "edge_embed.cli.embed:embed",
    "index": "edge_embed.cli.index:index",
    "watch": "edge_embed.cli.watch:watch",
    "query": "edge_embed.cli.query:query",
    "eval": "edge_embed.cli.eval:eval_command",
    "status": "edge_embed.cli.index:status",
    "remove": "edge_embed.cli.index:remove",
    "config": "edge_embed.cli.index:config",
    "compact": "edge_embed.cli.maintenance:compact",
    "models": "edge_embed.cli.models:models",
    "pull": "edge_embed.cli.models:pull",
    "doctor": "edge_embed.cli.doctor:doctor",
    "serve": "edge_embed.cli.serve:serve",
    "mcp": "edge_embed.cli.serve:mcp",
}


EXIT_INTERRUPTED = 130


class UserError(click.ClickException):
    """A one-line error for the user; exit status 2, like grep's 'trouble'."""

    exit_code = 2


class LazyGroup(click.Group):
    """Imports a command's module on first use; EdgeEmbedError and a dependency's
    ImportError become UserError (exit 2)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        with import_errors_explained():  # also while --help lists the commands
            return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        try:
            # dependencies imported on first use: llama_cpp, apsw...; the environment read once, here
            with import_errors_explained(), using(Config.from_env()):
                return super().invoke(ctx)
        except EdgeEmbedError as exc:
            raise UserError(cli_message(exc)) from None
        except Exception as exc:  # an apsw error that got past the store: still one line, not a traceback
            if "apsw" not in sys.modules:  # no index was opened (click's Exit, the query fast path): api stays unloaded
                raise
            from edge_embed.api import escaped_sqlite_error

            error = escaped_sqlite_error(exc)
            if error is None:
                raise
            raise UserError(cli_message(error)) from None
        except KeyboardInterrupt:  # like a shell: 128 + SIGINT, not click's "Aborted!" + 1 (= no results)
            click.echo("\naborted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


@contextmanager
def import_errors_explained() -> Iterator[None]:
    """A missing or too old dependency becomes one line naming the package to install
    (edge_embed.dependencies); an ImportError inside edge-embed itself is a bug and keeps
    its traceback."""
    try:
        yield
    except ImportError as exc:
        from edge_embed.dependencies import dependency_error  # importlib.metadata: only on failure

        error = dependency_error(exc)
        if error is None:
            raise
        raise UserError(cli_message(error)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edge-embed")
def cli() -> None:
    """Private, offline semantic search over your files.

    Embeddings come from a Qwen3-Embedding GGUF model run locally by llama.cpp (on your
    NVIDIA GPU when there is one, on the CPU otherwise); the index is ONE SQLite file.

    \b
    First steps:
      edge-embed doctor                  what hardware was found, how the model will run
      edge-embed pull                    download the default model (once)
      edge-embed index ~/notes           chunk, embed and store a folder (incremental)
      edge-embed query "rotate API keys" hybrid semantic + keyword search
    """


def main() -> None:
    cli(prog_name="edge-embed")
