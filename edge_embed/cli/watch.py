"""``edge-embed watch``: keep the index current while files change (the loop is ``edge_embed.watch``)."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import click

from edge_embed.cli.common import db_option, handling_signal, report_migration, warnings_to_stderr
from edge_embed.cli.index import WarningsOnly, stop_on_sigint
from edge_embed.cli.options import runtime_options, settings_from_options
from edge_embed.cli.serve import parse_duration


@click.command()
@click.argument("folders", nargs=-1, type=click.Path(file_okay=False, path_type=Path))
@db_option
@click.option("--hidden", is_flag=True, help="Also index hidden files and folders (as `index --hidden`).")
@click.option("--include", multiple=True, metavar="GLOB", help="Only look at files matching GLOB (as `index --include`).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Do not look at files matching GLOB (as `index --exclude`).")
@click.option("--reconcile", "reconcile", default="10m", show_default=True, metavar="DURATION",
              help="Re-check every folder with a full stat walk this often (events can be lost).")
@click.option("--poll", "poll", default="30s", show_default=True, metavar="DURATION",
              help="Re-check folders that send no change events (network, FUSE) this often.")
@click.option("--debounce", default="1s", show_default=True, metavar="DURATION",
              help="Group a burst of changes for at most this long before indexing it.")
@click.option("--keep-alive", default="5m", show_default=True, metavar="DURATION",
              help="Unload the model after this long without changes (it reloads on the next).")
@click.option("--force-polling", is_flag=True, help="Poll every folder instead of using change events.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@runtime_options
def watch(folders, db, hidden, include, exclude, reconcile, poll, debounce, keep_alive, force_polling, quiet, **runtime):
    """Keep the index current: index what changes in FOLDERS as it changes, until Ctrl-C.

    FOLDERS default to every folder of the index. A save is searchable within seconds;
    the rules are `index`'s (ignore files, --include/--exclude, hidden files), and so is
    the crash safety: kill it at any time and the next `watch` or `index` finishes the job.

    Change events (inotify, FSEvents, ReadDirectoryChangesW) only say where to look: at
    start, after a burst too large to trust (a big `git checkout`), when a folder was
    moved, unmounted or came back, and every --reconcile, a full stat walk re-checks
    everything. Folders on network or FUSE file systems, which send no events, are
    re-checked every --poll instead. A folder that vanishes (an unplugged drive) keeps its
    files in the index.

    While it runs it holds the index's writer lock: `index`, `remove` and `compact` say so.
    `edge-embed status` shows what it watches and what is pending. `edge-embed serve
    --watch` does the same inside the server, sharing its model.

    \b
    Examples:
      edge-embed watch                          every folder of the default index
      edge-embed watch ~/notes --db notes.db    one folder (indexed first if new)
      edge-embed watch --reconcile 1h --keep-alive 1m
    """
    from edge_embed.api import Index, IndexRequest
    from edge_embed.watch import WatchSettings

    warnings_to_stderr(quiet)
    settings = WatchSettings(
        debounce_ms=round(duration(debounce, "--debounce") * 1000),
        reconcile_s=duration(reconcile, "--reconcile"),
        poll_s=duration(poll, "--poll"),
        keep_alive_s=parse_duration(keep_alive),
        force_polling=force_polling,
    )
    model = runtime.pop("model")
    index = Index.open(db, settings_from_options(**runtime))
    request = IndexRequest(include=include, exclude=exclude, hidden=hidden)  # the index keeps its instruction
    stop = threading.Event()
    report = CliReport(quiet)
    if not quiet:
        names = ", ".join(str(folder) for folder in folders) or "every folder of the index"
        click.echo(f"watching {names} into {index.path} (Ctrl-C stops)", err=True)
    with index, stop_on_sigint(stop, quiet=True), stop_on_sigterm(stop):
        index.watch(
            folders, request, settings, stop=stop, model=model, progress=WarningsOnly(quiet), report=report,
            on_migration=report_migration,
        )
    if not quiet:
        click.echo("stopped: the index is consistent; files changed from now on are found by the next watch or index", err=True)


def duration(text: str, option: str) -> float:
    """A positive duration ('never' is refused: these options need a period)."""
    seconds = parse_duration(text)
    if seconds is None or seconds <= 0:
        raise click.BadParameter(f"{text!r}: give a duration such as 500ms, 30s or 10m", param_hint=option)
    return seconds


@contextmanager
def stop_on_sigterm(stop: threading.Event):
    """`kill` (SIGTERM) stops like Ctrl-C: the current file is finished and committed."""
    with handling_signal(signal.SIGTERM, lambda signum, frame: stop.set()):
        yield


class CliReport:
    """One line per batch that changed the index; warnings on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def said(self, message: str) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {message}", err=True)

    def applied(self, root: Path, summary, whole: bool) -> None:
        if self.quiet or not (summary.indexed or summary.removed):
            return
        what = "re-checked" if whole else "changed"
        click.echo(
            f"{time.strftime('%H:%M:%S')} {root} ({what}): {summary.indexed} indexed, {summary.removed} removed, "
            f"{summary.texts_embedded} chunks embedded in {summary.elapsed_s:.1f}s"
        )
