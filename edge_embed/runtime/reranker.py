"""The reranker engine: Qwen3-Reranker scored through llama.cpp's RANK pooling.

Qwen3-Reranker is a causal LM asked whether a document meets a query; its relevance is
P("yes") among {"yes", "no"} as the next token after its own chat prompt (model card,
huggingface.co/Qwen/Qwen3-Reranker-0.6B):

    <|im_start|>system
    Judge whether the Document meets the requirements based on the Query and the Instruct
    provided. Note that the answer can only be "yes" or "no".<|im_end|>
    <|im_start|>user
    <Instruct>: {instruction}
    <Query>: {query}
    <Document>: {document}<|im_end|>
    <|im_start|>assistant
    <think>

    </think>

(the system sentence is one line). llama.cpp's converter keeps the "yes" and "no" rows of
the LM head as the classifier ``cls.output.weight``; with pooling RANK llama.cpp computes
those two logits at the last token and, for qwen3, softmaxes them: the first output is
P(yes) = sigmoid(yes - no), the score used here as is (checked against the numpy reference
in tests/test_reranker.py). A conversion without the head scores everything ~1e-23, so it
is refused from its header before any weight loads.

The template's markers are parsed as control tokens; the query and document are
tokenized with ``special=False``, so a document can never inject them. The document is
last in the user turn, so cutting the body's tail to fit the context cuts only it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from edge_embed.catalog import DEFAULT_RERANKER
from edge_embed.errors import EdgeEmbedError
from edge_embed.modelfile import ModelInfo, read_model_info
from edge_embed.runtime.engine import (
    DEFAULT_INSTRUCTION,
    load_session,
    _Tokenized,
    decode_sequences,
    pack_by_length,
)
from edge_embed.runtime.plan import ModelShape, Plan, RuntimeSettings, plan_for
from edge_embed.runtime.vocabulary import tokenize

RERANK_CTX = 2048  # tokens of one prompt: the template (~70), the query and a chunk of ~512
PROMPT_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
PROMPT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
PULL_HINT = "{pull} (ggml-org/Qwen3-Reranker-0.6B-Q8_0-GGUF)"  # a hint template: errors.TERMS


def check_reranker_model(model: ModelInfo) -> None:
    """Refuse, from the header alone, a file that is not a reranker llama.cpp can score.

    Community conversions of Qwen3-Reranker made before llama.cpp knew it lack the head and
    often the RANK pooling key too; their name still says "Reranker".
    """
    looks_like_one = model.is_reranker or "rerank" in model.name.lower() or "rerank" in model.path.name.lower()
    if model.n_cls_out == 0 and looks_like_one:
        raise EdgeEmbedError(
            f"{model.path.name} has no classifier head (cls.output.weight), so llama.cpp would score every"
            " document ~0: it is an older conversion", param="reranker",
            hint="use the ggml-org one instead: " + PULL_HINT, model_name=DEFAULT_RERANKER,
        )
    if not model.is_reranker:
        raise EdgeEmbedError(
            f"{model.path.name} ({model.name}) is not a reranker (its pooling is {model.pooling or 'unspecified'},"
            " not rank)", param="reranker", hint="use {model_name}: " + PULL_HINT, model_name=DEFAULT_RERANKER,
        )


@dataclass
class Reranker:
    """A loaded reranker: (query, documents) to relevance probabilities in 0..1."""

    model: ModelInfo
    plan: Plan
    instruction: str = DEFAULT_INSTRUCTION

    def __post_init__(self) -> None:
        check_reranker_model(self.model)
        self._llama = load_session(self.model, self.plan, rank_pooling=True)
        vocab = self._llama.vocab
        self._tokenize = lambda text, special: tokenize(vocab, text, special=special)
        self._prefix = self._tokenize(PROMPT_PREFIX, True)
        self._suffix = self._tokenize(PROMPT_SUFFIX, True)
        self._width = self.model.n_cls_out
        self._n_seq_max = self._llama.n_seq_max

    def prompt_tokens(self, query: str, document: str) -> list[int]:
        """The model's prompt for one pair, the document's tail cut to fit the context."""
        body = self._tokenize(f"<Instruct>: {self.instruction}\n<Query>: {query}\n<Document>: {document}", False)
        budget = self.plan.n_ctx - len(self._prefix) - len(self._suffix)
        return self._prefix + body[:budget] + self._suffix

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """P(yes) for each document, in input order (float64)."""
        items = [_Tokenized(i, self.prompt_tokens(query, doc)) for i, doc in enumerate(documents)]
        out = np.empty((len(items), self._width), dtype=np.float32)
        for batch in pack_by_length(items, self.plan.n_batch, self._n_seq_max):
            decode_sequences(self._llama, batch, out, "rerank")
        return out[:, 0].astype(np.float64)

    def close(self) -> None:
        self._llama.close()


@dataclass
class RerankerHandle:
    """A verified reranker file and its plan; ``load()`` brings it into llama.cpp once.

    ``score`` holds a lock: a llama.cpp context serves one decode at a time, and the
    server searches on several threads.
    """

    info: ModelInfo
    plan: Plan
    label: str
    _reranker: Reranker | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def loaded(self) -> bool:
        return self._reranker is not None

    def load(self) -> Reranker:
        if self._reranker is None:
            self._reranker = Reranker(self.info, self.plan)
        return self._reranker

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.load().score(query, documents)

    def close(self) -> None:
        """Free the model (VRAM goes back); the next ``score`` loads it again."""
        with self._lock:  # not while another thread scores with it
            if self._reranker is not None:
                self._reranker.close()
                self._reranker = None


def reranker_settings(runtime: RuntimeSettings) -> RuntimeSettings:
    """The user's device settings with the reranker's own context (a prompt, not a file)."""
    return replace(runtime, ctx=RERANK_CTX)


def prepare_reranker(spec: str | None, runtime: RuntimeSettings) -> RerankerHandle:
    """Resolve the reranker (never downloading), check its header and plan its offload."""
    from edge_embed.download import resolve_model

    resolved = resolve_model(spec or DEFAULT_RERANKER)
    info = read_model_info(resolved.path)
    check_reranker_model(info)
    return RerankerHandle(info, plan_for(ModelShape.from_model_info(info), reranker_settings(runtime)), resolved.label)
