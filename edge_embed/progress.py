"""What an indexing run tells its caller while it runs: the events of ``Progress``.
Warnings and the slow-run note are ``Phrase``s (or plain text) that the face words.

Here, outside ``indexer/``, so that a face can build its display on ``NoProgress`` without
importing the indexer (faces reach it only through ``api.Index``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from edge_embed.errors import Phrase
    from edge_embed.estimate import Estimate


class Progress(Protocol):
    """Receives pipeline events; the CLI draws a progress line from them."""

    def root_started(self, root: Path, total_files: int, total_bytes: int) -> None: ...

    def file_done(self, relpath: str, size: int) -> None: ...

    def embedded(self, texts: int, tokens: int) -> None: ...

    def estimated(self, estimate: Estimate, slow_note: Phrase | None) -> None: ...

    def warning(self, message: str | Phrase) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """Ignores every event (library use); the CLI's displays override what they show."""

    def root_started(self, root: Path, total_files: int, total_bytes: int) -> None:
        pass

    def file_done(self, relpath: str, size: int) -> None:
        pass

    def embedded(self, texts: int, tokens: int) -> None:
        pass

    def estimated(self, estimate: Estimate, slow_note: Phrase | None) -> None:
        pass

    def warning(self, message: str | Phrase) -> None:
        pass

    def close(self) -> None:
        pass
