"""From what the user asked for (``--model``, runtime options) to a ready Embedder."""

from __future__ import annotations

from edge_embed.download import resolve_model
from edge_embed.errors import EdgeEmbedError, ModelNotFound
from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import DEFAULT_INSTRUCTION, Embedder
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, plan_for


def load_embedder(
    spec: str | None,
    runtime: RuntimeSettings,
    *,
    qwen3_format: bool | None = None,
    instruction: str | None = None,
    expect_hash: str | None = None,
) -> Embedder:
    """Resolve the model (never downloading), plan its offload, load it into llama.cpp.

    ``expect_hash`` (the header hash an index recorded) refuses a different file that
    happens to sit at the same name or path.
    """
    resolved = resolve_model(spec)
    info = read_model_info(resolved.path)
    if expect_hash is not None and info.header_hash != expect_hash:
        raise EdgeEmbedError(
            f"the model file {resolved.path} is not the one this index was built with "
            f"({resolved.label}); re-index with `edge-embed index --rebuild` or restore the file"
        )
    plan = plan_for(ModelShape.from_model_info(info), runtime)
    return Embedder(
        info,
        plan,
        qwen3_format=qwen3_format,
        instruction=instruction or DEFAULT_INSTRUCTION,
        # how to find the model again: its catalog name, else the file's absolute path
        label=resolved.entry.name if resolved.entry else str(resolved.path),
    )


def embedder_for_index(settings, runtime: RuntimeSettings) -> Embedder:
    """Load exactly the model an index was built with, so a query never uses another.

    ``settings`` is the index's IndexSettings (model label = catalog name or file path,
    header hash, per-index default query instruction).
    """
    try:
        return load_embedder(
            settings.model_label,
            runtime,
            instruction=settings.instruction,
            expect_hash=settings.model_hash,
        )
    except ModelNotFound as exc:
        raise ModelNotFound(f"this index was built with {settings.model_label}: {exc}") from None
