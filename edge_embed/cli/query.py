"""``edge-embed query``: search the index, for people (snippets) and programs (JSON)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from edge_embed.cli.common import db_option, reranker_option, warnings_to_stderr
from edge_embed.cli.options import FINITE_FLOAT, embed_url_option, runtime_options, settings_from_options
from edge_embed.cli.wording import cli_text
from edge_embed.errors import EdgeEmbedError
from edge_embed.paths import resolve_db
from edge_embed.render import (
    COLOR_CHOICES,
    format_hits,
    json_document,
    terminal_safe,
    json_lines,
    unique_paths,
    use_color,
)
from edge_embed.rerank import DEFAULT_RERANK_TOP
from edge_embed.search import (
    DEFAULT_PER_FILE,
    MODES,
    MAX_KNN_K,
    SearchOptions,
    highlight_terms,
)

EXIT_NO_RESULTS = 1  # like grep: 0 found, 1 nothing found, 2 trouble


class QueryCommand(click.Command):
    """``query``, whose TEXT may itself begin with '-' (``-minus +plus``, ``-fno-inline``).

    click reads such a word as options (``-minus`` is ``-m inus``), so its errors about
    them name options the user never meant. When the arguments hold a word that starts
    with '-' and is not one of query's options as written, those errors say instead that
    such a query goes after ``--``. Real options (``-k5``, ``--mode=keyword``) parse as before.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        dashed = self._dashed_text(ctx, args)
        try:
            rest = super().parse_args(ctx, args)
        except click.UsageError as exc:
            if dashed is not None:
                exc.message = f"{exc.message.rstrip('.')}; {after_double_dash(dashed)}"
            raise
        ctx.meta["query.dashed_text"] = dashed
        return rest

    def _dashed_text(self, ctx: click.Context, args: list[str]) -> str | None:
        """The first argument before ``--`` that starts with '-' but is no option of query's."""
        names = {name for param in self.get_params(ctx) for name in param.opts}
        for arg in args:
            if arg == "--":
                return None
            if _is_long_option_typo(arg):
                continue
            if arg.startswith("-") and arg != "-" and not _is_option_use(arg, names):
                return arg
        return None


def _is_long_option_typo(arg: str) -> bool:
    """``--mdoe``: click's own error (with its "did you mean") fits better than query text."""
    return arg.startswith("--") and not any(char.isspace() for char in arg)


def _is_option_use(arg: str, names: set[str]) -> bool:
    """``--name``, ``--name=value``, ``-k``, or a short option with a number glued on (``-k5``).

    A word glued to a short option (``-minus``) is taken for query text: no option of
    query takes a word that way (``-m`` is refused anyway).
    """
    if arg.startswith("--"):
        return arg.split("=", 1)[0] in names
    return arg in names or (arg[:2] in names and _is_number(arg[2:]))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def after_double_dash(text: str) -> str:
    return f"a query that starts with '-' goes after '--': edge-embed query -- {shlex.quote(text)}"


@click.command(cls=QueryCommand)
@click.argument("words", nargs=-1, metavar="TEXT...")
@click.option("-k", "k", type=click.IntRange(1, MAX_KNN_K), default=10, show_default=True,
              help="How many results (with --files: how many files).")
@click.option("--mode", type=click.Choice(MODES), default="hybrid", show_default=True,
              help="hybrid: meaning and exact words, their scores added (cosine + the share of the "
                   "query's word weight a chunk holds, see --explain); vector: meaning only; "
                   "keyword: exact words only (BM25; needs no model, so it is instant).")
@click.option("--in", "in_paths", multiple=True, metavar="PATH",
              help="Only files under PATH (a folder or file inside an indexed folder). Repeatable.")
@click.option("--glob", "globs", multiple=True, metavar="GLOB",
              help="Only files matching GLOB, in gitignore syntax like index --include, "
                   "relative to the indexed folder: '*.md' matches names at any depth, "
                   "'docs/*.md' only directly in docs/, 'docs/**/*.md' at any depth under "
                   "docs/, 'docs/' everything in it; a later '!GLOB' takes back a match "
                   "(--glob '*.md' --glob '!drafts/**'). Repeatable.")
@click.option("--min-score", type=FINITE_FLOAT, metavar="S",
              help="Drop weak results: S is a cosine similarity (-1..1) in vector and hybrid "
                   "modes (hybrid then keeps only chunks the vector search found), a BM25 "
                   "score in keyword mode.")
@click.option("--per-file", type=click.IntRange(min=0), default=DEFAULT_PER_FILE, show_default=True,
              metavar="N", help="At most N chunks of one file, so one long file cannot fill the page "
                                "(0 = no limit).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (schema: docs/query-json.md).")
@click.option("--jsonl", "as_jsonl", is_flag=True, help="One JSON object per result and line.")
@click.option("--files", "files_only", is_flag=True,
              help="Only the paths of the best files, one per line (like grep -l); control "
                   "characters in names are shown escaped: for scripts, add -0.")
@click.option("-0", "--null", "null", is_flag=True,
              help="With --files: end each path with a NUL byte instead of a newline, exactly "
                   "as it is, for `xargs -0` (like grep -Z / find -print0).")
@click.option("--full", is_flag=True, help="Print whole chunks instead of snippets.")
@click.option("--explain", is_flag=True,
              help="Show each result's rank and score in each list and how its hybrid score was "
                   "added up: cosine + bm25 / the most bm25 any chunk could score for the query's words.")
@click.option("--rerank/--no-rerank", default=None,
              help="Rescore the best candidates with the reranker (qwen3-reranker-0.6b) and blend its "
                   "verdict with their rank. Default: on when the reranker fits whole on the GPU, off "
                   "on the CPU, where it costs a model pass per candidate (`edge-embed doctor` says which), "
                   "and off in keyword mode, which loads no model.")
@click.option("--rerank-top", type=click.IntRange(1, MAX_KNN_K), default=DEFAULT_RERANK_TOP, show_default=True,
              metavar="N", help="How many candidates the reranker rescores (at least -k are).")
@reranker_option
@click.option("--instruct", metavar="TASK",
              help="The task sentence of the query instruction (default: the index's, see "
                   "`edge-embed config`), e.g. 'Given a question, retrieve code that answers it'.")
@click.option("--color", "color_choice", type=click.Choice(COLOR_CHOICES), default="auto",
              show_default=True, help="Highlight query terms; auto = on a terminal unless NO_COLOR is set.")
@click.option("--no-server", is_flag=True,
              help="Search in this process even when `edge-embed serve` runs for this index "
                   "(by default a running server answers: no model loading, same output).")
@db_option
@embed_url_option
@runtime_options
def query(
    words: tuple[str, ...],
    k: int,
    mode: str,
    in_paths: tuple[str, ...],
    globs: tuple[str, ...],
    min_score: float | None,
    per_file: int,
    as_json: bool,
    as_jsonl: bool,
    files_only: bool,
    null: bool,
    full: bool,
    explain: bool,
    rerank: bool | None,
    rerank_top: int,
    reranker: str | None,
    instruct: str | None,
    color_choice: str,
    db: Path | None,
    no_server: bool,
    embed_url: str | None,
    **runtime,
) -> None:
    """Search the index for TEXT: hybrid semantic + keyword search by default.

    \b
    Examples:
      edge-embed query how do I rotate the API keys
      edge-embed query "retry with backoff" --in ~/src/app --glob '*.py'
      edge-embed query "install steps" --glob 'docs/**/*.md' --glob '!docs/drafts/**'
      edge-embed query --mode keyword ERR_CERT_DATE_INVALID      (exact words, no model)
      edge-embed query "quarterly budget" --files -0 | xargs -0 ls -l
      edge-embed query "deploy steps" --json | jq -r '.results[].path'
      edge-embed query "login fails" --explain                   (why this order?)
      edge-embed query "login fails" --rerank --rerank-top 30    (rescore 30 candidates)
      edge-embed query -- "-minus +plus"    (a query starting with '-' goes after --)

    Each result shows path:first-last line, the score and the best-matching lines.
    Exit status, like grep: 0 results found, 1 none, 2 an error.
    """
    ctx = click.get_current_context()  # not pass_context: --ctx already takes the name
    refuse_model_option(ctx)
    runtime.pop("model")
    if sum((as_json, as_jsonl, files_only)) > 1:
        raise EdgeEmbedError("choose one of --json, --jsonl and --files")
    if null and not files_only:
        raise EdgeEmbedError("-0/--null goes with --files (--json and --jsonl escape every name already)")
    warnings_to_stderr()
    text = " ".join(words)
    options = SearchOptions(
        mode=mode,
        k=k,
        in_paths=in_paths,
        globs=globs,
        min_score=min_score,
        per_file=1 if files_only else per_file,
    )
    reranking = {"rerank": rerank, "rerank_top": rerank_top, "reranker": reranker}
    served = None if no_server or embed_url else search_through_server(db, text, options, instruct, reranking)
    if served is not None:
        hits, rerank_reason, index_age_s = served
    else:
        from edge_embed.api import Index  # the model, numpy and SQLite: only in this process's path

        with Index.open(db, settings_from_options(**runtime), embed_url=embed_url) as index:
            outcome = index.search_outcome(text, options, instruct=instruct, **reranking)
            hits, rerank_reason, index_age_s = outcome.hits, outcome.rerank_reason, outcome.index_age_s
    cwd = Path.cwd()
    if as_json:
        click.echo(json_document(text, mode, hits, index_age_s))
    elif as_jsonl:
        for line in json_lines(hits):
            click.echo(line)
    elif files_only and null:
        for path in unique_paths(hits, cwd):
            click.echo(path.encode("utf-8", errors="surrogateescape") + b"\0", nl=False)
    elif files_only:
        for path in unique_paths(hits, cwd):
            click.echo(terminal_safe(path))
    else:
        color = use_color(color_choice, isatty=sys.stdout.isatty(), environ=os.environ)
        if explain:
            click.echo(f"rerank: {cli_text(rerank_reason)}\n")
        for line in format_hits(hits, mode, highlight_terms(text), cwd=cwd, color=color, full=full, explain=explain):
            click.echo(line, color=color)
        if not hits:
            click.echo("no results", err=True)
    ctx.exit(0 if hits else EXIT_NO_RESULTS)


def refuse_model_option(ctx: click.Context) -> None:
    """A query must use the model its index was built with; --model would suggest otherwise.

    Only an explicit flag is refused: EDGE_EMBED_MODEL in the environment (meant for
    `index` and `embed`) is ignored here, so setting it does not break every query.
    """
    if ctx.get_parameter_source("model") is ParameterSource.COMMANDLINE:
        dashed = ctx.meta.get("query.dashed_text")
        if dashed is not None:  # "-minus" was read as -m inus
            raise EdgeEmbedError(after_double_dash(dashed))
        raise EdgeEmbedError(
            "query always uses the model the index was built with; drop --model "
            "(to change models, re-index: `edge-embed index --rebuild --model NAME FOLDER`)"
        )


def search_through_server(
    db: Path | None, text: str, options: SearchOptions, instruct: str | None, reranking: dict[str, object]
):
    """Hits from a running `edge-embed serve` of this index, why it did (not) rerank and
    the index's age, or None when none answers.

    --in paths are made absolute here: the server does not share our working directory.
    The server reranks with its own reranker: a search that may rerank with another one
    (--reranker, EDGE_EMBED_RERANKER) runs here; with --no-rerank the server answers.
    """
    if reranking["reranker"] is not None and reranking["rerank"] is not False:
        return None
    from edge_embed.render import hit_from_record
    from edge_embed.server import client

    body = {
        "query": text,
        "k": options.k,
        "mode": options.mode,
        "in": [os.path.abspath(os.path.expanduser(path)) for path in options.in_paths],
        "glob": list(options.globs),
        "min_score": options.min_score,
        "per_file": options.per_file,
        "instruct": instruct,
        "rerank": reranking["rerank"],
        "rerank_top": reranking["rerank_top"],
    }
    answer = client.search(str(resolve_db(db)), body)
    if answer is None:
        return None
    hits = [hit_from_record(record) for record in answer["results"]]
    return hits, client.rerank_reason(answer), answer.get("index_age_s")
