"""The model a new index gets when nobody named one: the one that fits this machine.

The catalog's ``default`` (Qwen3-Embedding-4B Q4_K_M) is the best model a 6-12 GB GPU
runs whole; on a CPU it embeds ~20 tokens/s on two cores, so a notes folder takes hours
before the first result. Without a GPU that takes it whole, the catalog's ``cpu_default``
(the 0.6B, ~7x faster) is the better first run. An existing index always keeps its own
model, and ``--model`` / ``EDGE_EMBED_MODEL`` always win: this only fills the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_embed.catalog import CPU_DEFAULT_MODEL, DEFAULT_MODEL, get_entry
from edge_embed.errors import Phrase
from edge_embed.runtime.plan import RuntimeSettings, catalog_shape, cpu_speedup, plan_for


@dataclass(frozen=True)
class ModelChoice:
    """A catalog model chosen for this machine, and the one-line reason (each face words it)."""

    name: str
    reason: Phrase


def choose_default_model(settings: RuntimeSettings | None = None) -> ModelChoice:
    """``default`` when its plan puts every layer and the head on a GPU, else ``cpu_default``."""
    entry = get_entry(DEFAULT_MODEL)
    plan = plan_for(catalog_shape(entry), settings or RuntimeSettings())
    if plan.gpu is not None and plan.output_on_gpu:
        return ModelChoice(entry.name, Phrase("default model {name}: it fits whole on {gpu}", name=entry.name, gpu=plan.gpu.name))
    where = plan.notes[0] if plan.notes else "it would run on the CPU"
    faster = cpu_speedup(catalog_shape(entry).parameters)
    return ModelChoice(
        CPU_DEFAULT_MODEL,
        Phrase(
            "default model {name}, not {larger}: {where}; on the CPU it is ~{faster}x faster ({model} {larger} to "
            "use the larger model anyway)", name=CPU_DEFAULT_MODEL, larger=entry.name, where=where, faster=f"{faster:.0f}",
        ),
    )
