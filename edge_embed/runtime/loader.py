"""From what the user asked for (``--model``, runtime options) to a ready Embedder.

Loading a multi-GB model into llama.cpp takes seconds, so it happens only when something
must be embedded: a ``ModelHandle`` knows the model's identity, dimension and offload
plan from its GGUF header alone, and loads the weights on first use. A re-index with
nothing changed, or a keyword query, never pays for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_embed.download import resolve_model
from edge_embed.errors import IndexMismatch, ModelNotFound
from edge_embed.modelfile import ModelInfo, read_model_info
from edge_embed.runtime.engine import DEFAULT_INSTRUCTION, Embedder, VocabularyOnly, check_dims, check_embedding_model
from edge_embed.runtime.plan import ModelShape, Plan, RuntimeSettings, cpu_tokens_per_second, plan_for


@dataclass
class ModelHandle:
    """A resolved, verified model file and its plan; ``load()`` brings it into llama.cpp."""

    info: ModelInfo
    plan: Plan
    label: str  # how to find the model again: its catalog name, else the file's absolute path
    qwen3_format: bool | None = None
    instruction: str = DEFAULT_INSTRUCTION
    _embedder: Embedder | None = field(default=None, repr=False)
    _vocabulary: VocabularyOnly | None = field(default=None, repr=False)

    @classmethod
    def from_embedder(cls, embedder: Embedder) -> "ModelHandle":
        """Wrap an Embedder that is already loaded (library use, tests)."""
        return cls(embedder.model, embedder.plan, embedder.label or str(embedder.model.path), _embedder=embedder)

    @property
    def native_dim(self) -> int:
        return self.info.n_embd

    @property
    def max_tokens(self) -> int:
        return self.plan.n_ctx

    def check_dims(self, dims: int | None) -> int:
        return check_dims(dims, self.native_dim)

    def rate_key(self) -> str:
        """Measured embedding rates are remembered per model file, device and threads."""
        return f"{self.info.header_hash}:{self.plan.device}:{self.plan.n_threads}"

    def planned_tokens_per_s(self) -> float | None:
        """The plan's CPU rate (a 2-core measurement, scaled); none is known for a GPU."""
        if self.plan.device != "cpu":
            return None
        return cpu_tokens_per_second(ModelShape.from_model_info(self.info), self.plan.n_threads)

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def load(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(
                self.info, self.plan, qwen3_format=self.qwen3_format, instruction=self.instruction, label=self.label
            )
        return self._embedder

    def load_vocabulary(self) -> VocabularyOnly:
        """The vocabulary alone, for counting tokens: no weights loaded, nothing decoded."""
        if self._vocabulary is None:
            self._vocabulary = VocabularyOnly(self.info, qwen3_format=self.qwen3_format)
        return self._vocabulary

    def close(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
            self._embedder = None
        if self._vocabulary is not None:
            self._vocabulary.close()
            self._vocabulary = None


def prepare_model(
    spec: str | None,
    runtime: RuntimeSettings,
    *,
    qwen3_format: bool | None = None,
    instruction: str | None = None,
    expect_hash: str | None = None,
) -> ModelHandle:
    """Resolve the model (never downloading), verify its file and plan its offload.

    A chat model (pooling NONE) is refused here, from its header, before any weights load.
    ``expect_hash`` (the header hash an index recorded) refuses a different file that
    happens to sit at the same name or path.
    """
    resolved = resolve_model(spec, runtime)
    info = read_model_info(resolved.path)
    if expect_hash is not None and info.header_hash != expect_hash:
        raise IndexMismatch(
            f"the model file {resolved.path} is not the one this index was built with ({resolved.label})",
            param="model", hint="restore the file, or {rebuild}",
        )
    check_embedding_model(info, qwen3_format)
    return ModelHandle(
        info,
        plan_for(ModelShape.from_model_info(info), runtime),
        label=resolved.entry.name if resolved.entry else str(resolved.path),
        qwen3_format=qwen3_format,
        instruction=instruction or (resolved.entry.query_instruction if resolved.entry else DEFAULT_INSTRUCTION),
    )


def load_embedder(spec: str | None, runtime: RuntimeSettings, *, qwen3_format: bool | None = None) -> Embedder:
    """prepare_model + load: for commands that always embed."""
    return prepare_model(spec, runtime, qwen3_format=qwen3_format).load()


def index_model(settings, runtime: RuntimeSettings) -> ModelHandle:
    """Exactly the model an index was built with, so a query never uses another.

    ``settings`` is the index's IndexSettings (model label = catalog name or file path,
    header hash, per-index default query instruction).
    """
    try:
        return prepare_model(
            settings.model_label, runtime, instruction=settings.instruction, expect_hash=settings.model_hash
        )
    except ModelNotFound as exc:
        raise exc.add_context(f"this index was built with {settings.model_label}") from None
