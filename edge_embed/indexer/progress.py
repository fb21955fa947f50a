"""What a run tells its caller while it runs: warnings and the estimate, through the
``Progress`` events (``edge_embed.progress``)."""

from __future__ import annotations

from typing import Sequence

from edge_embed.catalog import CPU_DEFAULT_MODEL
from edge_embed.estimate import SLOW_RUN_S, Estimate, estimated_tokens, format_duration
from edge_embed.files import FoundFile, Skip
from edge_embed.indexer.planner import KeptFolder
from edge_embed.progress import Progress
from edge_embed.runtime.plan import cpu_speedup

# Skips that are expected and only counted; every other one is worth a warning.
SILENT_SKIPS = frozenset({"binary"})


def warn_skip(progress: Progress, skip: Skip) -> None:
    """A skip worth a word (not a binary file: those are expected, and only counted)."""
    if skip.reason not in SILENT_SKIPS:
        progress.warning(f"skipped {skip.relpath}: {skip.reason}" + (f" ({skip.detail})" if skip.detail else ""))


def warn_kept(progress: Progress, kept: KeptFolder) -> None:
    """Why a folder's files stay although the folder looks gone, and how to drop them."""
    state = {"missing": "does not exist", "empty": "is empty", "dangling-symlink": "is a dangling symlink"}
    progress.warning(
        f"{kept.path} {state[kept.reason]} but the index holds {kept.files_kept} files from it (an "
        f"unplugged drive or an unmounted share?): they are kept; {kept.how_to_drop}"
    )


def grown_estimate(previous: Estimate | None, changed: Sequence[FoundFile], tokens_per_s: float | None, basis: str) -> Estimate:
    """The run's estimate with one more root's changed files (at most what they cost:
    dedup and unchanged contents make it less), at the latest rate known."""
    tokens = sum(estimated_tokens(item.relpath, item.size) for item in changed)
    return Estimate(
        files=len(changed) + (previous.files if previous else 0),
        tokens=tokens + (previous.tokens if previous else 0),
        tokens_per_s=tokens_per_s,
        basis=basis,
    )


def slow_run_note(device: str, parameters: int, estimate: Estimate) -> str | None:
    """On a CPU, a run estimated past SLOW_RUN_S names the CPU's catalog model, once, when
    it is at least twice as fast (parameters, as ``plan.cpu_speed_note`` counts them)."""
    seconds = estimate.seconds
    if seconds is None or seconds <= SLOW_RUN_S or device != "cpu":
        return None
    faster = cpu_speedup(parameters)
    if faster < 2:
        return None
    return (
        f"about {estimate.tokens:,} tokens to embed: roughly {format_duration(seconds)} on the CPU at "
        f"{estimate.tokens_per_s:,.0f} tokens/s ({estimate.basis}); {CPU_DEFAULT_MODEL} is ~{faster:.0f}x "
        f"faster: --model {CPU_DEFAULT_MODEL} (an existing index: with --rebuild)"
    )
