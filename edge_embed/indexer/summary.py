"""What a run did: each stage returns a ``Tally`` of its part, the run's summary is their sum."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from edge_embed.indexer.planner import KeptFolder

if TYPE_CHECKING:
    from edge_embed.estimate import Estimate
    from edge_embed.store import CompactResult


@dataclass(frozen=True)
class FileCounts:
    """What the files came to, counted alike by a stage's ``Tally`` and the run's
    ``IndexSummary``, in the order of `index --json`'s first keys (its next one, the run's
    chunks_removed, is why the shared counts stop here)."""

    roots: tuple[str, ...] = ()
    files_seen: int = 0
    indexed: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: Counter = field(default_factory=Counter)
    failed: int = 0
    lossy: int = 0
    chunks_added: int = 0
    chunks_kept: int = 0  # chunks of changed files whose text stayed: rows kept in place


@dataclass(frozen=True)
class Tally(FileCounts):
    """Counts one step returns (a file's outcome, a flush, a root's plan); added up, a run's.

    Adding sums the numbers and the skip counters and joins the tuples, so no stage
    writes into a shared summary: ``IndexSummary.of`` turns the total into the report.
    """

    chunks_reused: int = 0
    texts_embedded: int = 0
    tokens_embedded: int = 0
    embed_s: float = 0.0  # time inside the model, for the measured rate
    kept: tuple[KeptFolder, ...] = ()

    def __add__(self, other: Tally) -> Tally:
        return Tally(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class IndexSummary(FileCounts):
    """What a run did; printed by the CLI, as JSON with --json (the fields' order is the JSON's)."""

    roots: list[str] = field(default_factory=list)  # FileCounts' place, a list here
    chunks_removed: int = 0
    chunks_reused: int = 0
    texts_embedded: int = 0
    tokens_embedded: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    kept: list[KeptFolder] = field(default_factory=list)
    rebuilt: bool = False  # a --rebuild: interrupted, it left the old index as it was
    compacted: CompactResult | None = None  # the run ended with an automatic compaction
    estimate: Estimate | None = None  # what the run expected to embed, said before embedding

    @classmethod
    def of(cls, tally: Tally, **run: object) -> IndexSummary:
        """The summary of a run whose stages added up to ``tally``; ``run`` holds what only
        the whole run knows (chunks_removed, interrupted, compacted, estimate, elapsed_s)."""
        counts = {f.name: getattr(tally, f.name) for f in fields(tally) if f.name not in ("roots", "kept", "embed_s")}
        return cls(roots=list(tally.roots), kept=list(tally.kept), **counts, **run)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["skipped"] = dict(self.skipped)
        data["compacted"] = self.compacted.to_dict() if self.compacted else None
        data["estimate"] = self.estimate.to_dict() if self.estimate else None
        return data
