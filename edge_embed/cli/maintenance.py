"""``edge-embed compact``: give back the space the edit history wasted; its words for `status` and `index`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from edge_embed.cli.common import db_option, report_migration

if TYPE_CHECKING:
    from edge_embed.api import CompactResult, IndexStatus


@click.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the space before and after as JSON on stdout.")
def compact(db, as_json):
    """Give back the space that edits wasted: rebuild the vector table, then VACUUM.

    Every edit of a chunk frees its vector slot, and sqlite-vec reuses a freed slot only
    in its newest block of 16 slots: the others stay in the file, and every vector search
    still scans them. Deleted rows leave free pages and keyword-index tombstones too.
    `edge-embed status` shows how much is reclaimable ("space:").

    You rarely need to run it: `edge-embed index` compacts by itself at the end of a run
    when at least 30% of the file and 16 MB are reclaimable. Run it by hand after
    removing a big folder or a large edit, before copying or backing up the index, or
    when `status` shows much reclaimable space in a small index.

    Chunk ids, vectors and results stay the same. It is crash-safe (an interruption
    leaves the old index or the compacted one, never a mix), queries keep answering
    while it runs, and it needs free disk space of about twice the index file.

    \b
    Examples:
      edge-embed status                 # "space: 41.9 MB reclaimable (62%) ..."
      edge-embed compact
      edge-embed compact --db project.db --json
    """
    from edge_embed.api import Index

    with Index.open(db) as index:
        result = index.compact(on_migration=report_migration)
    if as_json:
        click.echo(json.dumps({"db": str(index.path), **result.to_dict()}, indent=2))
    else:
        click.echo(f"Compacted {index.path}: {describe_compaction(result)}")


def describe_compaction(result: CompactResult) -> str:
    """One line: sizes and vector chunks before and after."""
    before, after = result.before, result.after
    return (
        f"{megabytes(before.database_bytes)} -> {megabytes(after.database_bytes)}, vector chunks "
        f"{before.vector_chunks} -> {after.vector_chunks}, in {result.elapsed_s:.1f} s"
    )


def describe_space(status: IndexStatus) -> str:
    """What `status` says about wasted space, with the command that gives it back."""
    usage = status.space
    line = (
        f"{megabytes(usage.reclaimable_bytes)} reclaimable ({usage.reclaimable_fraction:.0%}): "
        f"{usage.vector_chunks} vector chunks for {usage.vectors} vectors "
        f"({usage.needed_vector_chunks} needed), {megabytes(usage.free_bytes)} free pages"
    )
    if status.worth_compacting:
        line += "; `edge-embed compact` gives it back"
    return line


def megabytes(count: int) -> str:
    return f"{count / 1e6:.1f} MB"
