"""How long an `index` run will take, said before the embedding starts.

A first run of the 4B model on a laptop CPU embeds ~20 tokens a second: a notes folder
takes hours, and a user who is not told gives up (or worse, thinks it hangs). Before
embedding, the changed files' bytes give a token estimate (text is ~3 bytes an embedded token
once chunk headers and overlap are counted, for English prose and code; PDF and Word files hold much
less text than their bytes), and the model's rate gives the time.

The rate is the one this model last reached on this machine, on the same device and
threads (recorded after every run that embedded enough to measure, in the cache
directory), else the plan's figure (runtime/plan.py: a 2-core measurement scaled by cores,
parameters and bits per weight). Once the run has embedded something, its own rate
replaces both in the progress line's ETA.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edge_embed.extract import document_format
from edge_embed.paths import read_cache_entry, write_cache_entry

TEXT_BYTES_PER_TOKEN = 3.0  # embedded tokens per byte of text, chunk headers and overlap included: 2.85 measured (MiniLM, 23 docs and code files)
DOCUMENT_BYTES_PER_TOKEN = 20.0  # PDF/DOCX: fonts, images and compression around the text
RATES_FILE = "embed-rates.json"
MIN_MEASURED_TOKENS = 2000  # a shorter run's rate is mostly start-up
SLOW_RUN_S = 600.0  # above this on a CPU, the faster model is named once


@dataclass(frozen=True)
class Estimate:
    """Tokens to embed and the time they take; ``basis`` is "measured" or "planned"."""

    files: int
    tokens: int
    tokens_per_s: float | None
    basis: str

    @property
    def seconds(self) -> float | None:
        return self.tokens / self.tokens_per_s if self.tokens_per_s else None

    def to_dict(self) -> dict:
        return {**asdict(self), "seconds": None if self.seconds is None else round(self.seconds, 1)}


def estimated_tokens(relpath: str, size: int) -> int:
    per_token = DOCUMENT_BYTES_PER_TOKEN if document_format(relpath) else TEXT_BYTES_PER_TOKEN
    return int(size / per_token) + 1


def recorded_rate(key: str) -> float | None:
    """The tokens/s this model last reached with this device and threads, if recorded."""
    value = read_cache_entry(RATES_FILE, key)
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def record_rate(key: str, tokens: int, decode_s: float) -> None:
    """Remember a run's rate (embedding time only); runs too short to measure are ignored."""
    if tokens >= MIN_MEASURED_TOKENS and decode_s > 0:
        write_cache_entry(RATES_FILE, key, round(tokens / decode_s, 2))


def format_duration(seconds: float) -> str:
    """1h05m, 4m07s or 9s: how the progress line and the notes say a time."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
