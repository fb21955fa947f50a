"""The incremental indexing pipeline: files -> text -> chunks -> embeddings -> store.

Incremental at three levels, so a re-run costs (almost) only what changed:

1. a file whose size and mtime match the index is not even opened;
2. a file whose bytes hash to the stored content hash only gets its mtime refreshed;
3. a changed file is re-chunked, and only chunk texts whose embed text (header + text)
   is not in the index anywhere are sent to the model; the rest reuse stored vectors.
   Chunks whose text the file already had keep their rows (ids, vector slots) in place.

When the edit history has wasted enough space (dead vector slots, free pages), the run
ends with a compaction (``IndexOptions.auto_compact``, see ``store.maintenance.compact``).

Crash safety comes from the store: each file's rows are written in one transaction, so an
interrupted run leaves every file either in its old or its new state, and the next run
picks up the rest. Memory stays flat: files are streamed and embedded in batches.

One module per stage, in the order a run goes through them:

| module | stage |
| --- | --- |
| ``options`` | ``IndexOptions``, filled from the index's own settings (``resolve_options``) |
| ``walk`` | the disk side of planning: a root's state, the walk's stats |
| ``planner`` | pure decisions: roots to walk or keep, files to read, files to forget |
| ``preparer`` | a changed file to chunks: read, hash, extract (sandbox), chunk |
| ``batcher`` | dedup against the index, decode-sized groups, one write per file |
| ``storage`` | every call the indexer makes to the ``Store`` |
| ``progress`` | the warnings and estimate a caller hears (the events: ``edge_embed.progress``) |
| ``summary`` | each stage's ``Tally``, summed into the run's ``IndexSummary`` |
| ``pipeline`` | ``Indexer``: the stages in order, per run and per root |
"""

from edge_embed.indexer.options import IndexOptions, index_settings, resolve_options
from edge_embed.indexer.pipeline import Indexer
from edge_embed.indexer.planner import KeptFolder
from edge_embed.indexer.progress import slow_run_note
from edge_embed.indexer.summary import IndexSummary
from edge_embed.indexer.walk import unavailable_state
from edge_embed.progress import NoProgress, Progress

__all__ = [
    "IndexOptions",
    "IndexSummary",
    "Indexer",
    "KeptFolder",
    "NoProgress",
    "Progress",
    "index_settings",
    "resolve_options",
    "slow_run_note",
    "unavailable_state",
]
