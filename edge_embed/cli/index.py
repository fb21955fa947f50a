"""``edge-embed index``, ``status``, ``remove`` and ``config``: build and manage the index."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge_embed.cli import EXIT_INTERRUPTED
from edge_embed.cli.common import db_option, handling_signal, report_migration, warnings_to_stderr
from edge_embed.render import terminal_safe
from edge_embed.cli.maintenance import describe_compaction, describe_space
from edge_embed.cli.options import embed_url_option, runtime_options, settings_from_options
from edge_embed.cli.wording import cli_text
from edge_embed.catalog import chunking_summary
from edge_embed.errors import EdgeEmbedError, ModelNotFound, Phrase
from edge_embed.estimate import format_duration
from edge_embed.files import DEFAULT_MAX_DOCUMENT_SIZE, DEFAULT_MAX_FILE_SIZE
from edge_embed.progress import NoProgress

if TYPE_CHECKING:
    from edge_embed.api import IndexStatus
    from edge_embed.runtime.choice import ModelChoice

@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@db_option
@click.option("--rebuild", is_flag=True, help="Re-index every folder of the index (and PATHS) from scratch, e.g. with another model, --dims or chunking; settings not given are kept. The new index is built beside the old one, which stays whole and queryable until the new one replaces it (so it needs that much free disk).")
@click.option("--include", multiple=True, metavar="GLOB", help="Only look at files matching GLOB (gitignore syntax; repeatable). Indexed files it leaves out are kept, not deleted.")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Do not look at files matching GLOB (gitignore syntax; repeatable). Indexed files it leaves out are kept; to drop files for good, list them in .edgeembedignore.")
@click.option("--hidden", is_flag=True, help="Also index hidden files and folders (.git and other VCS folders are always skipped).")
@click.option("--follow-links", is_flag=True,
              help="Also follow symlinks that lead outside the folder (a drive, a shared folder). "
                   "Without it such links are skipped with a note; links inside the folder are "
                   "followed either way, unless they lead to a hidden or ignored path.")
@click.option("--max-file-size", type=int, default=DEFAULT_MAX_FILE_SIZE, show_default=True, metavar="BYTES", help="Skip larger files (with a note).")
@click.option("--max-document-size", type=int, default=DEFAULT_MAX_DOCUMENT_SIZE, show_default=True, metavar="BYTES", help="Skip larger PDF and Word files (with a note).")
@click.option("--chunk-tokens", type=click.IntRange(32, 32768), default=None, metavar="N", help=f"Chunk size in model tokens, EOS included [new index: {chunking_summary('chunk_tokens')}; the reasons are in the model catalog, catalog.toml].")
@click.option("--overlap", type=click.IntRange(0, 16384), default=None, metavar="N", help=f"Tokens shared by consecutive chunks of a section [new index: {chunking_summary('overlap')}].")
@click.option("--dims", type=int, default=None, metavar="N", help="Store Matryoshka-truncated vectors of N dimensions (32..native) [new index: native].")
@click.option("--instruct", metavar="TASK", help="Default query task for this index (see `edge-embed config`).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--quiet", is_flag=True, help="No progress display and no warnings; just the summary.")
@embed_url_option
@runtime_options
def index(paths, db, rebuild, include, exclude, hidden, follow_links, max_file_size, max_document_size, chunk_tokens, overlap, dims, instruct, as_json, quiet, embed_url, **runtime):
    """Index the text, PDF and Word files under PATHS into one SQLite file (incremental).

    Files are split into chunks of the model's own tokens (at Markdown/rst/Org headings,
    paragraphs, code definitions; PDF and Word files at their headings and pages, each
    chunk keeping its page number), embedded by the local model, and stored with a
    keyword index beside the vectors. Run it again and only what changed is embedded; deleted
    files disappear. Interrupt it at any time: what was written stays consistent and the
    next run finishes the job.

    \b
    Examples:
      edge-embed index ~/notes                   # default model, default index file
      edge-embed index ~/notes ~/code/app        # several folders in one index
      edge-embed index . --exclude '*.min.js' --db project.db
      edge-embed index ~/notes --model qwen3-embedding-0.6b --rebuild
      edge-embed index --rebuild --dims 256      # every folder of the index, again

    Ignored: .gitignore and .edgeembedignore rules, hidden and VCS folders, node_modules,
    virtualenvs and build output, binary files, files over --max-file-size. Skipped with
    a note: PDFs without a text layer (scanned), encrypted or damaged documents, and any
    document whose parser takes over 2 minutes or 2 GiB (it runs in a separate process).
    """
    from edge_embed.api import Index, IndexRequest

    if not paths and not rebuild:
        raise click.UsageError("name the folders to index (or --rebuild to re-index those of the index)")
    warnings_to_stderr(quiet)
    model = runtime.pop("model")
    index = Index.open(db, settings_from_options(**runtime), embed_url=embed_url)
    # Unset settings (None) keep the index's own, with or without --rebuild.
    request = IndexRequest(
        include=include,
        exclude=exclude,
        hidden=hidden,
        follow_links=follow_links,
        max_file_size=max_file_size,
        max_document_size=max_document_size,
        chunk_tokens=chunk_tokens,
        overlap=overlap,
        dims=dims,
        instruction=instruct or None,
    )
    progress = TtyProgress() if (sys.stderr.isatty() and not quiet and not as_json) else WarningsOnly(quiet)
    stop = threading.Event()
    try:
        with index, stop_on_sigint(stop, quiet):
            summary = index.index(
                paths, request, model=model, progress=progress, stop=stop, rebuild=rebuild,
                on_migration=report_migration, on_default=None if quiet else say_default_model,
                on_missing=None if quiet else offer_pull,
            )
    except KeyboardInterrupt:  # the second Ctrl-C: the open transaction rolls back
        kept = "the index is as it was" if rebuild else "files written so far are kept"
        click.echo(f"aborted: {kept}; run the same command again to finish", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        progress.close()
    if as_json:
        click.echo(json.dumps({"db": str(index.path), **summary.to_dict()}, indent=2))
    else:
        click.echo(format_summary(summary, index.path), err=False)
    if summary.interrupted:
        sys.exit(EXIT_INTERRUPTED)


def say_default_model(choice: ModelChoice) -> None:
    """No --model and no index yet: the model that fits this machine, said in one line."""
    click.echo(cli_text(choice.reason), err=True)


def offer_pull(missing: ModelNotFound) -> bool:
    """A missing catalog model: on a terminal, offer to download it (True: it is there now).

    Asked while `index`'s Ctrl-C handler is installed, which only asks the run to stop
    after its batch: at the question and during the download a Ctrl-C aborts at once."""
    if not interactive():
        return False
    from edge_embed.catalog import get_entry
    from edge_embed.download import pull

    entry = get_entry(missing.model_name)
    with handling_signal(signal.SIGINT, signal.default_int_handler):
        if not click.confirm(f"{entry.name} is not downloaded ({entry.approx_size}). Download it now?", err=True):
            return False
        pull(entry, progress=True)
    return True


def interactive() -> bool:
    """A person at a terminal who can answer a question."""
    return sys.stdin.isatty() and sys.stderr.isatty()


@contextmanager
def stop_on_sigint(stop: threading.Event, quiet: bool):
    """First Ctrl-C: finish the current batch, commit, summarise. Second: abort now."""

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if not quiet:
            click.echo("\ninterrupted: finishing the current batch (Ctrl-C again to abort)", err=True)

    with handling_signal(signal.SIGINT, handler):
        yield


class WarningsOnly(NoProgress):
    """Not a terminal (or --quiet): no progress line, a warning per unusual skip (the
    indexer's ``Progress``; the other events are ignored here, drawn by ``TtyProgress``)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def warning(self, message: str | Phrase) -> None:
        if not self.quiet:
            click.echo(f"warning: {terminal_safe(cli_text(message))}", err=True)


class TtyProgress(WarningsOnly):
    """One redrawn status line on stderr: files done/total, chunks, tokens/s, ETA.

    The ETA is by tokens: the run's estimate (``edge_embed.estimate``) less what is
    embedded, at the rate measured so far (before the first decode, the estimate's own
    rate). Without an estimate it is by bytes, counting unchanged files as done at once,
    so a mostly unchanged folder does not promise hours.
    """

    REDRAW_S = 0.2

    def __init__(self) -> None:
        super().__init__(quiet=False)
        self.root = ""
        self.total = self.done = self.total_bytes = self.bytes_done = self.texts = self.tokens = 0
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.estimate = None

    def root_started(self, root: Path, total_files: int, total_bytes: int) -> None:
        self.root, self.total, self.total_bytes = str(root), total_files, total_bytes
        self.done = self.bytes_done = 0
        self.started = time.monotonic()
        self.draw(force=True)

    def file_done(self, relpath: str, size: int) -> None:
        self.done += 1
        self.bytes_done += size
        self.draw()

    def embedded(self, texts: int, tokens: int) -> None:
        self.texts += texts
        self.tokens += tokens
        self.draw(force=True)

    def estimated(self, estimate, slow_note: Phrase | None) -> None:
        self.estimate = estimate
        self.clear()
        click.echo(f"to embed: {describe_estimate(estimate)}", err=True)
        if slow_note:
            click.echo(f"note: {cli_text(slow_note)}", err=True)
        self.draw(force=True)

    def warning(self, message: str | Phrase) -> None:
        self.clear()
        super().warning(message)
        self.draw(force=True)

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < self.REDRAW_S:
            return
        self.last_draw = now
        elapsed = now - self.started
        rate = f"{self.tokens / elapsed:,.0f} tok/s" if self.tokens and elapsed else "- tok/s"
        seconds_left = self.seconds_left(elapsed)
        eta = format_duration(seconds_left) if seconds_left is not None else "?"
        line = f"{self.root}: files {self.done}/{self.total} · chunks embedded {self.texts} · {rate} · ETA {eta}"
        click.echo(f"\r\x1b[2K{line}", err=True, nl=False)

    def seconds_left(self, elapsed: float) -> float | None:
        """By the token estimate when there is one (at the measured rate once there is one),
        else by bytes."""
        if self.estimate is not None:
            rate = self.tokens / elapsed if self.tokens and elapsed else self.estimate.tokens_per_s
            return max(self.estimate.tokens - self.tokens, 0) / rate if rate else None
        left = self.total_bytes - self.bytes_done
        return elapsed / self.bytes_done * left if self.bytes_done and left else None

    def clear(self) -> None:
        click.echo("\r\x1b[2K", err=True, nl=False)

    def close(self) -> None:
        self.clear()


def describe_estimate(estimate) -> str:
    """'about 12,400 tokens in 31 changed files, ~2m04s at 100 tokens/s (measured)'."""
    text = f"about {estimate.tokens:,} tokens in {estimate.files} changed files"
    if estimate.seconds is None:
        return text + " (the time shows once the first batch is embedded)"
    return f"{text}, ~{format_duration(estimate.seconds)} at {estimate.tokens_per_s:,.0f} tokens/s ({estimate.basis})"


def format_summary(summary, db_path: Path) -> str:
    skipped = sum(summary.skipped.values())
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(summary.skipped.items()))
    rate = summary.tokens_embedded / summary.elapsed_s if summary.elapsed_s else 0.0
    lines = [
        f"{'Interrupted' if summary.interrupted else 'Indexed'} {', '.join(summary.roots)} into {db_path}",
        f"  files:  {summary.indexed} indexed, {summary.unchanged} unchanged, {summary.removed} removed, "
        f"{skipped} skipped" + (f" ({reasons})" if reasons else "") + f", {summary.failed} failed"
        + (f", {summary.lossy} decoded with replacement characters" if summary.lossy else ""),
        f"  chunks: {summary.chunks_added} written, {summary.chunks_kept} kept in place, "
        f"{summary.chunks_removed} removed, {summary.chunks_reused} reused without embedding",
        f"  embedded {summary.texts_embedded} texts, {summary.tokens_embedded:,} tokens in {summary.elapsed_s:.1f}s"
        + (f" ({rate:,.0f} tokens/s overall)" if summary.tokens_embedded else ""),
    ]
    lines.extend(format_kept(kept) for kept in summary.kept)
    if summary.compacted:
        lines.append(f"  compacted (edits had wasted space): {describe_compaction(summary.compacted)}")
    if summary.interrupted and summary.rebuilt:
        lines.append("  rebuild abandoned: the index is as it was; run the same command again to rebuild it")
    elif summary.interrupted:
        lines.append("  run the same command again to finish: finished files are kept")
    return "\n".join(lines)


def format_kept(kept) -> str:
    """A folder that was not there (or empty): its files were kept, and how to drop them."""
    what = f"under {kept.path}, a dangling symlink" if kept.reason == "dangling-symlink" else f"of {kept.path}, which is {kept.reason}"
    return f"  kept:   {kept.files_kept} files {what} ({cli_text(kept.how_to_drop)})"


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(db, as_json):
    """Show what an index holds: folders, files, chunks, model, settings, size.

    "space:" is what `edge-embed compact` would give back: vector slots that edits left
    dead, and free pages. "watching:" says whether `edge-embed watch` (or `serve --watch`)
    keeps the index current, what it has pending, and when the index last changed.
    """
    from edge_embed.api import Index

    with Index.open(db) as index:
        status = index.status()
    if as_json:
        click.echo(json.dumps(status.to_dict(), indent=2, default=str))
        return
    for line in format_status(status) + format_watch(status.watch, status.index_age_s):
        click.echo(line)


def format_watch(watch: dict | None, age: float | None) -> list[str]:
    """Whether a watcher keeps the index current, what it has pending, when it last re-checked."""
    changed = f"last change {format_duration(age)} ago" if age is not None else "no files yet"
    if watch is None:
        return [f"watching: no (`edge-embed watch` keeps it current); {changed}"]
    folders = len(watch["watching"]) + len(watch["polling"])
    polled = f", {len(watch['polling'])} polled" if watch["polling"] else ""
    lines = [
        f"watching: {folders} folders{polled} (pid {watch['pid']}); {watch['pending']} changes pending; {changed}",
        f"  last full re-check {format_time(watch['last_reconcile_at']) if watch['last_reconcile_at'] else 'not yet'}",
    ]
    if watch.get("error"):
        lines.append(f"  error: {watch['error']}")
    return lines


def format_status(status: IndexStatus) -> list[str]:
    stats, roots = status.stats, status.roots
    settings = stats.get("settings") or {}
    lines = [
        f"index:    {stats['path']} ({stats['db_bytes'] / 1e6:.1f} MB)",
        f"space:    {describe_space(status)}",
        f"model:    {settings.get('model_label', '-')} (dims {settings.get('dims', '-')})",
        f"chunking: {settings.get('chunk_tokens', '-')} tokens, overlap {settings.get('overlap', '-')}",
        f"query task: {settings.get('instruction') or '(default)'}",
        f"totals:   {stats['files']} files, {stats['chunks']} chunks",
        *per_chunk_line(stats),
        *upgrade_line(stats),
        "folders:" if roots else "folders:  none yet (edge-embed index FOLDER)",
    ]
    for root in roots:
        when = format_time(root.last_indexed_at)
        lines.append(f"  {root.path}  {root.files} files, {root.chunks} chunks, last indexed {when}")
    return lines


def per_chunk_line(stats: dict) -> list[str]:
    """Bytes per chunk on disk and what a vector query reads of each (none when empty)."""
    if not stats.get("bytes_per_chunk"):
        return []
    if stats.get("vector_path") == "two-stage":
        scanned = f"a vector query scans {stats['coarse_bytes_per_chunk']} bytes of codes (two stages)"
    else:
        scanned = f"a vector query reads all {stats['settings']['dims'] * 4:,} bytes of its vector (exact scan)"
    return [f"per chunk: {stats['bytes_per_chunk'] / 1e3:.1f} KB on disk; {scanned}"]


def upgrade_line(stats: dict) -> list[str]:
    """The migrations an index an older edge-embed wrote still lacks (none when current):
    reads never run them, so `status` is where a user learns they are pending."""
    pending = stats.get("pending_migrations")
    if not pending:
        return []
    return [
        f"upgrade:  {len(pending)} pending ({', '.join(pending)}); searches answer without them until "
        "the next `edge-embed index FOLDER` (or watch, remove, compact) applies them, without re-embedding"
    ]


def format_time(timestamp) -> str:
    if not timestamp:
        return "never (interrupted?)"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(float(timestamp)))


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@db_option
def remove(path, db):
    """Forget an indexed folder (PATH as given to `index`) and all its chunks."""
    from edge_embed.api import Index

    with Index.open(db) as index:
        absolute = index.remove_folder(path, on_migration=report_migration)
    click.echo(f"removed {absolute}")


@click.command()
@db_option
@click.option("--instruct", metavar="TASK", help="Set the default query task of this index.")
@click.option("--reset-instruct", is_flag=True, help="Go back to the model's default query task.")
def config(db, instruct, reset_instruct):
    """Show or change per-index query settings.

    \b
    Example: a code index answers better with a code-search task:
      edge-embed config --instruct "Given a question about code, retrieve the code that answers it"
    """
    if instruct is not None and not instruct.strip():
        raise EdgeEmbedError("--instruct needs a non-empty task sentence")
    from edge_embed.api import Index

    with Index.open(db) as index:
        if instruct or reset_instruct:
            index.set_instruction(None if reset_instruct else instruct, on_migration=report_migration)
        settings = index.store_settings()
    if settings is None:  # created by a run that stopped before its first file
        raise EdgeEmbedError(
            f"the index {index.path} has no model or settings yet: build it with `edge-embed index FOLDER` first"
        )
    click.echo(f"model: {settings.model_label}")
    click.echo(f"query task: {settings.instruction or '(default) Given a web search query, retrieve relevant passages that answer the query'}")
