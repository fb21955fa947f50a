"""The embedding engine: with ``reranker`` the only modules that run llama.cpp (``vocabulary``
reads a model's tokens; ``hardware`` and ``amx`` only ask it facts).

Why not just ``Llama.embed``? It gets Qwen3-Embedding subtly wrong in ways that cost
retrieval quality without any error:

* with ``truncate=True`` it cuts the token list *after* the EOS was appended, so a long
  input silently loses the EOS whose hidden state *is* the embedding (last-token pooling);
* it appends EOS only when the GGUF says ``add_eos_token``, which older community
  conversions of Qwen3-Embedding do not, and it appends the *declared* EOS, which older
  conversions get wrong (``<|im_end|>`` instead of the pooled ``<|endoftext|>``);
* it truncates at ``n_batch`` rather than the context, packs inputs in arrival order and
  converts every vector through Python lists.

Here every input becomes ``prefix + body[:budget] + suffix`` where prefix/suffix are the
special tokens the model wants (for Qwen3 embedding models: no prefix, and as suffix
``<|endoftext|>`` found by its text, always), texts are tokenised with ``special=False``
(user text can never inject control tokens), sorted by length and packed into as few
``llama_decode`` calls as the token budget allows.
Queries get the Qwen3 instruction ``Instruct: {task}\\nQuery:{query}``; documents never do.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from edge_embed.errors import EdgeEmbedError, NotAnEmbeddingModel
from edge_embed.modelfile import ModelInfo
from edge_embed.runtime.plan import Plan
from edge_embed.runtime.vocabulary import Vocabulary

log = logging.getLogger("edge_embed")

OnDecode = Callable[[int, int], None]
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
MIN_MRL_DIMS = 32


@dataclass
class EmbedStats:
    """Where the time went, for benchmarks and the index progress display."""

    texts: int = 0
    tokens: int = 0
    decodes: int = 0
    truncated: int = 0
    tokenize_s: float = 0.0
    decode_s: float = 0.0
    pack_s: float = 0.0


@dataclass(frozen=True)
class _Tokenized:
    index: int
    tokens: list[int]


@dataclass
class Embedder:
    """A loaded GGUF embedding model, ready to turn texts into unit vectors.

    ``qwen3_format`` decides whether queries get the Qwen3 instruction and EOS is forced;
    None detects it from the GGUF (architecture qwen3 with last pooling or an
    "Embedding" name).
    """

    model: ModelInfo
    plan: Plan
    qwen3_format: bool | None = None
    instruction: str = DEFAULT_INSTRUCTION
    label: str = ""
    stats: EmbedStats = field(default_factory=EmbedStats)
    extra_buffer_types: bool | None = None  # None: as the AMX verdict says (runtime/amx.py)

    def __post_init__(self) -> None:
        if self.qwen3_format is None:
            self.qwen3_format = self.model.is_qwen3_embedding
        check_embedding_model(self.model, self.qwen3_format)
        self._llama = load_session(
            self.model, self.plan, last_pooling=self.qwen3_format, extra_buffer_types=self.extra_buffer_types
        )
        self.vocabulary = Vocabulary(self._llama.vocab, self.model, self.qwen3_format)
        self.native_dim = self._llama.n_embd()
        self.max_tokens = int(self.plan.n_ctx)
        self._n_seq_max = self._llama.n_seq_max

    # ----------------------------------------------------------------- tokens
    def tokenize(self, text: str) -> list[int]:
        """The model's tokens for ``text``: no special tokens added, none parsed."""
        return self.vocabulary.tokenize(text)

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs, *without* the special tokens added around every input."""
        return self.vocabulary.count_tokens(text)

    @property
    def special_token_count(self) -> int:
        """Tokens added around every input (1 for Qwen3: the EOS)."""
        return self.vocabulary.special_token_count

    def format_query(self, query: str, instruct: str | None = None) -> str:
        """Qwen3-Embedding's query format; other models get the query unchanged."""
        if not self.qwen3_format:
            return query
        return f"Instruct: {instruct or self.instruction}\nQuery:{query}"

    # ----------------------------------------------------------------- embed
    def embed_documents(
        self, texts: Sequence[str], dims: int | None = None, on_decode: OnDecode | None = None
    ) -> np.ndarray:
        """Unit vectors for documents (raw text + EOS), shape (len(texts), dims).

        ``on_decode(texts, tokens)`` is called after each llama.cpp decode: progress
        displays stay alive during a long call.
        """
        return self._embed_texts(texts, dims, on_decode)

    def embed_queries(
        self, queries: Sequence[str], instruct: str | None = None, dims: int | None = None
    ) -> np.ndarray:
        """Unit vectors for search queries (with the instruction for Qwen3 models)."""
        return self._embed_texts([self.format_query(q, instruct) for q in queries], dims)

    def check_dims(self, dims: int | None) -> int:
        return check_dims(dims, self.native_dim)

    def close(self) -> None:
        self._llama.close()

    def embed_inputs(
        self, inputs: Sequence[list[int]], dims: int | None = None, on_decode: OnDecode | None = None
    ) -> np.ndarray:
        """Unit vectors for complete model inputs (``input_tokens`` / ``wrap_tokens``).

        The server tokenizes the requests that queue up during a decode, then embeds all
        of them in one call: they share decodes like the texts of one batch.
        """
        dims = self.check_dims(dims)
        return truncate_and_normalize(self.embed_inputs_raw(inputs, on_decode), dims)

    def embed_inputs_raw(self, inputs: Sequence[list[int]], on_decode: OnDecode | None = None) -> np.ndarray:
        """The pooled hidden states, native size, not normalised: ``truncate_and_normalize``
        them to any dims with exactly the arithmetic of ``embed_inputs``."""
        items = [_Tokenized(i, tokens) for i, tokens in enumerate(inputs)]
        vectors = np.empty((len(items), self.native_dim), dtype=np.float32)
        for batch in self._pack(items):
            self._decode_into(batch, vectors)
            if on_decode is not None:
                on_decode(len(batch), sum(len(item.tokens) for item in batch))
        self.stats.texts += len(items)
        return vectors

    @property
    def vocab_size(self) -> int:
        """Token ids run from 0 to this (exclusive): the range a token-id input must be in."""
        return self.vocabulary.size

    def _embed_texts(self, texts: Sequence[str], dims: int | None, on_decode: OnDecode | None = None) -> np.ndarray:
        self.check_dims(dims)
        for text in texts:
            if not text.strip():
                raise EdgeEmbedError("cannot embed an empty text")
        started = time.perf_counter()
        inputs = [self.input_tokens(text) for text in texts]
        self.stats.tokenize_s += time.perf_counter() - started
        return self.embed_inputs(inputs, dims, on_decode)

    def input_tokens(self, text: str) -> list[int]:
        """The model input for ``text``: prefix + body + suffix, the body cut to fit."""
        return self.wrap_tokens(self.tokenize(text))

    def wrap_tokens(self, body: list[int]) -> list[int]:
        """prefix + body + suffix, cutting the body (never the EOS) to fit the context."""
        budget = self.max_tokens - self.special_token_count
        if len(body) > budget:
            log.warning(
                "input of %d tokens is longer than the context (%d): embedding its first %d tokens",
                len(body) + self.special_token_count,
                self.max_tokens,
                budget,
            )
            self.stats.truncated += 1
            body = body[:budget]
        return self.vocabulary.prefix + body + self.vocabulary.suffix

    def is_wrapped(self, ids: Sequence[int]) -> bool:
        """Whether token ids are already a complete input (``Vocabulary.is_wrapped``)."""
        return self.vocabulary.is_wrapped(ids)

    def _pack(self, items: list[_Tokenized]) -> list[list[_Tokenized]]:
        """Sort by length and fill each decode up to the token budget and sequence limit.

        Sorting puts inputs of similar length together, so the batches fill evenly and the
        number of decode calls is close to total_tokens / budget.
        """
        started = time.perf_counter()
        batches = pack_by_length(items, self.plan.n_batch, self._n_seq_max)
        self.stats.pack_s += time.perf_counter() - started
        return batches

    def _decode_into(self, batch: list[_Tokenized], out: np.ndarray) -> None:
        started = time.perf_counter()
        decode_sequences(self._llama, batch, out, "embed")
        self.stats.decode_s += time.perf_counter() - started
        self.stats.decodes += 1
        self.stats.tokens += sum(len(item.tokens) for item in batch)


ENCODER_ARCHITECTURES = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "modern-bert", "neo-bert", "t5encoder"})


def check_embedding_model(model: ModelInfo, qwen3_format: bool | None = None) -> None:
    """Refuse a GGUF whose pooling is NONE (declared, or no pooling key at all), from its header alone.

    Such a file is a chat/generation model: llama.cpp gives it no pooled vector, and
    llama-cpp-python fails with "NULL pointer access" after loading gigabytes of weights.
    Qwen3 embedding models are exempt: the engine always makes them pool the last token.
    """
    forced_last = model.is_qwen3_embedding if qwen3_format is None else qwen3_format
    if model.pooling == "rank":
        raise NotAnEmbeddingModel(
            f"{model.path.name} ({model.name}) is a reranker (pooling RANK), not an embedding model",
            model_name=model.name,
            pooling=model.pooling,
            hint="use it as the {reranker} of a search that reranks, and an embedding model such as "
            "qwen3-embedding-0.6b as the {model}",
        )
    if model.pooling in (None, "none") and not forced_last:
        raise NotAnEmbeddingModel(
            f"{model.path.name} ({model.name}) is not an embedding model: its pooling is NONE, so it is a"
            " chat/generation model",
            model_name=model.name,
            pooling=model.pooling,
            hint="give an embedding model as the {model}, e.g. qwen3-embedding-0.6b ({models} to list them), "
            "or a GGUF that declares mean, cls or last pooling",
        )


def check_dims(dims: int | None, native: int) -> int:
    """Validate an MRL dimension; None means the model's native dimension."""
    if dims is None:
        return native
    if not MIN_MRL_DIMS <= dims <= native:
        raise EdgeEmbedError(
            f"asked for {dims} dimensions", param="dims",
            hint="{dims} must be between {low} and {native} (this model's native dimension)",
            low=MIN_MRL_DIMS, native=native,
        )
    return dims


def truncate_and_normalize(vectors: np.ndarray, dims: int) -> np.ndarray:
    """MRL: keep the first ``dims`` components, then L2-normalise each row."""
    cut = np.ascontiguousarray(vectors[:, :dims], dtype=np.float32)
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return cut / norms


def pack_by_length(items: list[_Tokenized], budget: int, n_seq_max: int) -> list[list[_Tokenized]]:
    """Sort by length and fill each decode up to the token ``budget`` and sequence limit.

    Sorting puts inputs of similar length together, so the batches fill evenly and the
    number of decode calls is close to total_tokens / budget.
    """
    budget = max(budget, 1)
    batches: list[list[_Tokenized]] = []
    current: list[_Tokenized] = []
    used = 0
    for item in sorted(items, key=lambda it: len(it.tokens)):
        n = len(item.tokens)
        if current and (used + n > budget or len(current) >= n_seq_max):
            batches.append(current)
            current, used = [], 0
        current.append(item)
        used += n
    if current:
        batches.append(current)
    return batches


def decode_sequences(session: "LlamaSession", batch: list[_Tokenized], out: np.ndarray, verb: str) -> None:
    """One ``llama_decode`` of the packed inputs; row ``item.index`` of ``out`` gets each
    input's pooled output (``out.shape[1]`` floats: a vector, or RANK pooling's scores)."""
    lib = _llama_cpp()
    session.batch.reset()
    for seq_id, item in enumerate(batch):
        session.batch.add_sequence(item.tokens, seq_id, True)
    session.ctx.kv_cache_clear()
    if lib.llama_decode(session.ctx.ctx, session.batch.batch) != 0:
        raise EdgeEmbedError(
            f"llama.cpp failed to {verb} a batch (out of memory?)", kind="unavailable", param="batch",
            hint="try a smaller {batch} or {ctx}",
        )
    for seq_id, item in enumerate(batch):
        ptr = lib.llama_get_embeddings_seq(session.ctx.ctx, seq_id)
        out[item.index] = np.ctypeslib.as_array(ptr, shape=(out.shape[1],))


def decode_one(session: "LlamaSession", tokens: list[int], out: np.ndarray) -> None:
    """Decode one input into row 0 of ``out`` (the AMX probe's single decode)."""
    decode_sequences(session, [_Tokenized(0, tokens)], out, "embed")


def _llama_cpp():
    import llama_cpp

    return llama_cpp


@dataclass
class LlamaSession:
    """A llama.cpp model with its context and batch, loaded with parameters we set ourselves.

    ``llama_cpp.Llama`` cannot turn llama.cpp's extra buffer types off (no argument for
    ``use_extra_bufts``), which AMX-faulting CPUs need (``runtime/amx.py``), and it does
    chat-template and tokenizer set-up an embedder never uses. llama-cpp-python's own
    wrappers (``_internals``) free the native objects in the right order.
    """

    model: Any
    ctx: Any
    batch: Any
    n_seq_max: int

    @property
    def vocab(self):
        return self.model.vocab

    def n_embd(self) -> int:
        return int(_llama_cpp().llama_model_n_embd(self.model.model))

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()

    def __del__(self) -> None:
        # The context keeps its model alive in a reference cycle: an unclosed session would
        # hold gigabytes until the cyclic collector ran. Closing twice is harmless.
        self.close()


def load_session(
    model: ModelInfo,
    plan: Plan,
    *,
    last_pooling: bool = False,
    rank_pooling: bool = False,
    extra_buffer_types: bool | None = None,
) -> LlamaSession:
    """Create the llama.cpp model and context the plan describes.

    ``n_batch`` of the context is the whole context so that one input of up to ``n_ctx``
    tokens fits a single decode; the packing budget (``plan.n_batch``) is ours to apply.
    Encoder models (BERT family) need the whole input in one micro-batch. ``rank_pooling``
    loads a reranker: llama.cpp then returns its classifier's scores per input.
    ``extra_buffer_types`` None: on, without AMX where it faults (``amx.extra_buffer_types_allowed``).
    """
    from llama_cpp import _internals

    lib = _llama_cpp()
    _backend_init()
    if extra_buffer_types is None:
        from edge_embed.runtime.amx import extra_buffer_types_allowed

        extra_buffer_types = extra_buffer_types_allowed()
    model_params = lib.llama_model_default_params()
    model_params.n_gpu_layers = plan.n_gpu_layers
    model_params.load_mode = lib.LLAMA_LOAD_MODE_MMAP  # as Llama() loads: weights mapped, not copied
    model_params.use_extra_bufts = extra_buffer_types
    if plan.gpu is not None and plan.n_gpu_layers > 0:
        # The plan sized the model for this one card: no splitting across others.
        model_params.main_gpu = plan.gpu.index
        model_params.split_mode = lib.LLAMA_SPLIT_MODE_NONE
    context_params = context_parameters(model, plan, last_pooling=last_pooling, rank_pooling=rank_pooling)
    try:
        # verbose=True: no swapping of sys.stdout and fds 1-2 for the whole process (see
        # tests/test_engine.py); the loader's log is quieted at its source instead.
        with _loader_log_quiet():
            loaded = _internals.LlamaModel(path_model=str(model.path), params=model_params, verbose=True)
    except ValueError as exc:
        raise EdgeEmbedError(f"llama.cpp could not load {model.path.name}: {exc}") from None
    try:
        ctx = _internals.LlamaContext(model=loaded, params=context_params, verbose=False)
    except ValueError as exc:
        loaded.close()
        raise EdgeEmbedError(
            f"llama.cpp could not make a context for {model.path.name} ({exc}): out of memory?", kind="unavailable",
            param="ctx", hint="try a smaller {ctx}",
        ) from None
    batch = _internals.LlamaBatch(n_tokens=plan.n_ctx, embd=0, n_seq_max=plan.n_ctx, verbose=False)
    return LlamaSession(loaded, ctx, batch, int(context_params.n_seq_max))


def load_vocabulary_only(model: ModelInfo):
    """The model's vocabulary without its weights (llama.cpp's ``vocab_only``): nothing is
    uploaded to a GPU and nothing decodes, so no AMX verdict is needed either."""
    from llama_cpp import _internals

    _backend_init()
    model_params = _llama_cpp().llama_model_default_params()
    model_params.vocab_only = True
    model_params.n_gpu_layers = 0
    try:
        with _loader_log_quiet():
            return _internals.LlamaModel(path_model=str(model.path), params=model_params, verbose=True)
    except ValueError as exc:
        raise EdgeEmbedError(f"llama.cpp could not read the vocabulary of {model.path.name}: {exc}") from None


@dataclass
class VocabularyOnly:
    """A model's vocabulary loaded alone: the token counts chunking needs when an embedding
    server (``--embed-url``) makes the vectors, in a quarter second and ~50 MiB, where
    loading the whole model would map (on a GPU machine, upload) its weights to never run
    them."""

    model: ModelInfo
    qwen3_format: bool | None = None

    def __post_init__(self) -> None:
        if self.qwen3_format is None:
            self.qwen3_format = self.model.is_qwen3_embedding
        self._loaded = load_vocabulary_only(self.model)
        try:
            self.vocabulary = Vocabulary(self._loaded.vocab, self.model, self.qwen3_format)
        except BaseException:
            self._loaded.close()
            raise

    def count_tokens(self, text: str) -> int:
        return self.vocabulary.count_tokens(text)

    @property
    def special_token_count(self) -> int:
        return self.vocabulary.special_token_count

    def close(self) -> None:
        self._loaded.close()


def context_parameters(model: ModelInfo, plan: Plan, *, last_pooling: bool, rank_pooling: bool):
    """llama.cpp's context parameters for embedding (or ranking) with ``plan``."""
    lib = _llama_cpp()
    encoder = model.architecture in ENCODER_ARCHITECTURES
    params = lib.llama_context_default_params()
    params.n_ctx = plan.n_ctx
    params.n_batch = plan.n_ctx
    params.n_ubatch = plan.n_ctx if encoder else min(plan.n_ubatch, plan.n_ctx)
    params.n_threads = params.n_threads_batch = plan.n_threads
    params.embeddings = True
    params.n_seq_max = min(plan.n_ctx, int(lib.llama_max_parallel_sequences()))
    params.kv_unified = True  # one cache for every packed input: n_ctx bounds a decode
    params.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if plan.flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
    if last_pooling and model.pooling != "last":
        params.pooling_type = lib.LLAMA_POOLING_TYPE_LAST
    if rank_pooling:
        params.pooling_type = lib.LLAMA_POOLING_TYPE_RANK
    return params


def _backend_init() -> None:
    """What ``Llama(verbose=False)`` does before each load: llama.cpp's log (routed to
    Python by llama-cpp-python, one process-wide switch that any ``Llama(verbose=True)``
    turns on) quiet except for errors, and the backends set up once."""
    from llama_cpp._logger import set_verbose

    set_verbose(False)
    _init_backends()


@contextmanager
def _loader_log_quiet() -> Iterator[None]:
    """llama.cpp's log at CRITICAL while a model loads: the loader's complaints about a
    file's metadata ("special_eos_id is not in special_eog_ids" for every BERT GGUF) are
    not the user's to act on, and a file that does not load comes back as our error."""
    from llama_cpp._logger import logger

    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@functools.cache
def _init_backends() -> None:
    _llama_cpp().llama_backend_init()
