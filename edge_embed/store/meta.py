"""``store.meta``: the ``meta`` table: how the index was built, when it was last written,
and which files' extraction keeps timing out."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace

import apsw

from edge_embed.errors import EdgeEmbedError, IndexMismatch
from edge_embed.store.part import Part, transaction
from edge_embed.store.records import IndexSettings, settings_differences
from edge_embed.store.schema import create_vector_table


def stamp_write(conn: apsw.Connection) -> None:
    """Record now as the last write, inside the caller's transaction (``Meta.last_write_at``)."""
    conn.execute(
        "INSERT INTO meta(key, value) VALUES('last_write_at', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (repr(time.time()),),
    )


class Meta(Part):
    """The index's settings (model, dims, chunking, instruction) and its bookkeeping."""

    def settings(self) -> IndexSettings | None:
        """What the index was built with; None before its first files."""
        raw = self._scalar("SELECT value FROM meta WHERE key = 'settings'")
        return IndexSettings(**json.loads(str(raw))) if raw is not None else None

    def required_settings(self) -> IndexSettings:
        """The settings, which writing or searching vectors needs (their dims)."""
        stored = self.settings()
        if stored is None:
            raise EdgeEmbedError(f"{self.path} has no model yet", kind="not_found", hint="build it first: {index}")
        return stored

    def init_settings(self, settings: IndexSettings) -> None:
        """First index: record the settings and create the vector table of their dimension."""
        if settings.dims <= 0:
            raise ValueError(f"dims must be positive, got {settings.dims}")
        with transaction(self._conn):
            if self.settings() is not None:
                self.check_settings(settings)
                return
            self._save_settings(settings)
            create_vector_table(self._conn, settings.dims)

    def check_settings(self, wanted: IndexSettings) -> None:
        """Raise IndexMismatch naming what differs from how this index was built."""
        stored = self.settings()
        if stored is None:
            return
        differences = settings_differences(stored, wanted)
        if differences:
            raise IndexMismatch(
                f"the index {self.path} was built with {stored.describe()}; you asked for "
                f"{wanted.describe()} ({', '.join(differences)} differ)",
                hint="{rebuild}, or use a separate index ({db})",
            )

    def set_instruction(self, instruction: str | None) -> None:
        """The default query task of this index (None: the model's default)."""
        with transaction(self._conn):
            self._save_settings(replace(self.required_settings(), instruction=instruction))

    def set_model_file(self, label: str, model_file: str, model_size: int) -> None:
        """Where the index's model now lives (the same model, by header hash, moved or renamed)."""
        with transaction(self._conn):
            stored = self.required_settings()
            self._save_settings(replace(stored, model_label=label, model_file=model_file, model_size=model_size))

    def _save_settings(self, settings: IndexSettings) -> None:
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES('settings', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (json.dumps(asdict(settings)),),
        )

    def last_write_at(self) -> float | None:
        """When a file was last written or forgotten (epoch seconds); None for an empty index.

        Indexes written before the stamp existed answer with their newest file.
        """
        stamp = self._scalar("SELECT value FROM meta WHERE key = 'last_write_at'")
        if stamp is not None:
            return float(stamp)
        newest = self._scalar("SELECT max(indexed_at) FROM files")
        return float(newest) if newest is not None else None

    def count_timeout(self, content_hash: str) -> int:
        """One more extraction timeout of these exact bytes; returns how many so far.

        Kept in ``meta`` (no file row: a file that timed out keeps its old chunks and stat,
        so the next run tries again), until ``forget_timeouts``.
        """
        key = f"extraction-timeouts:{content_hash}"
        with transaction(self._conn):
            return int(self._scalar(
                "INSERT INTO meta(key, value) VALUES(?, '1') "
                "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value",
                (key,),
            ))

    def forget_timeouts(self, content_hash: str) -> None:
        with transaction(self._conn):
            self._conn.execute("DELETE FROM meta WHERE key = ?", (f"extraction-timeouts:{content_hash}",))
