"""What a run tells its caller while it runs: warnings and the estimate, through the
``Progress`` events (``edge_embed.progress``). Warnings and the estimate's note may name
settings and operations: they are ``Phrase``s (or plain text), which the face words
(``errors.say``)."""

from __future__ import annotations

from typing import Sequence

from edge_embed.catalog import CPU_DEFAULT_MODEL
from edge_embed.errors import Phrase
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
        template = "skipped {relpath}: {reason} ({detail})" if skip.detail else "skipped {relpath}: {reason}"
        progress.warning(Phrase(template, relpath=skip.relpath, reason=skip.reason, detail=skip.detail))


def warn_kept(progress: Progress, kept: KeptFolder) -> None:
    """Why a folder's files stay although the folder looks gone, and how to drop them."""
    state = {"missing": "does not exist", "empty": "is empty", "dangling-symlink": "is a dangling symlink"}
    progress.warning(
        Phrase(
            "{path} {state} but the index holds {files_kept} files from it (an unplugged drive or an unmounted "
            "share?): they are kept; {how_to_drop}",
            path=kept.path, state=state[kept.reason], files_kept=kept.files_kept, how_to_drop=kept.how_to_drop,
        )
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


def slow_run_note(device: str, parameters: int, estimate: Estimate) -> Phrase | None:
    """On a CPU, a run estimated past SLOW_RUN_S names the CPU's catalog model, once, when
    it is at least twice as fast (parameters, as ``plan.cpu_speed_note`` counts them)."""
    seconds = estimate.seconds
    if seconds is None or seconds <= SLOW_RUN_S or device != "cpu":
        return None
    faster = cpu_speedup(parameters)
    if faster < 2:
        return None
    return Phrase(
        "about {tokens} tokens to embed: roughly {duration} on the CPU at {rate} tokens/s ({basis}); {small} is "
        "~{faster}x faster: {model} {small} (an existing index: with {rebuilding})",
        tokens=f"{estimate.tokens:,}", duration=format_duration(seconds), rate=f"{estimate.tokens_per_s:,.0f}",
        basis=estimate.basis, small=CPU_DEFAULT_MODEL, faster=f"{faster:.0f}",
    )
