"""A tiny Qwen3-Reranker GGUF and a numpy reference of its relevance score.

Qwen3-Reranker is a Qwen3 causal LM asked "does this Document answer this Query?": its
relevance is P("yes") over {"yes", "no"} for the next token after the prompt. llama.cpp's
converter (``convert_hf_to_gguf.py``, ``Qwen3Model._get_cls_out_tensor``) keeps only those
two rows of the LM head, as ``cls.output.weight`` = [yes row, no row], and declares
pooling RANK, so llama.cpp computes the two logits at the prompt's last token. The
reference here recomputes them from the raw weights (``reference.hidden_states``) and
turns them into the score: softmax over the two = sigmoid(yes - no).

The prompt is written out here from the model card (huggingface.co/Qwen/Qwen3-Reranker-0.6B),
independently of the engine, so that a wrong template in the engine fails the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType

from edge_embed.testing import reference
from edge_embed.testing.gguf_builder import (
    ARCH,
    CHAT_MARKERS,
    CLASSIFIER_TENSOR,
    RERANK_LABELS,
    TINY_CONFIG,
    finish_gguf,
    tiny_weights,
    write_metadata,
)
from edge_embed.testing.reference import Qwen3Config

TINY_RERANKER_NAME = "Qwen3-Reranker tiny test"
HEAD_SCALE = 0.2  # logits of a few units: scores mid-range, where documents differ most
CARD_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


@dataclass(frozen=True)
class TinyReranker:
    """A tiny reranker GGUF on disk plus its weights, for the reference score."""

    path: Path
    config: Qwen3Config
    weights: dict[str, np.ndarray]
    marker_ids: dict[str, int]

    def prompt_tokens(self, query: str, document: str, instruction: str = CARD_INSTRUCTION) -> list[int]:
        """The model card's prompt as token ids: chat markers are single tokens only in the
        fixed template; the query and document are plain text."""
        body = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
        return self._template_tokens(CARD_PREFIX) + reference.tokenize(body) + self._template_tokens(CARD_SUFFIX)

    def logits(self, token_ids: Sequence[int]) -> np.ndarray:
        """[yes, no] logits at the last token (what llama.cpp's RANK pooling computes)."""
        last = reference.hidden_states(self.weights, self.config, token_ids)[-1]
        return np.asarray(self.weights[CLASSIFIER_TENSOR], dtype=np.float64) @ last

    def score(self, token_ids: Sequence[int]) -> float:
        """P(yes) among {yes, no}: sigmoid(yes - no)."""
        yes, no = self.logits(token_ids)
        return float(1.0 / (1.0 + np.exp(no - yes)))

    def _template_tokens(self, text: str) -> list[int]:
        """Tokens of template text, chat markers as their control tokens."""
        ids: list[int] = []
        while text:
            found = [(text.find(marker), marker) for marker in CHAT_MARKERS if marker in text]
            if not found:
                return ids + reference.tokenize(text)
            at, marker = min(found)
            ids += reference.tokenize(text[:at]) + [self.marker_ids[marker]]
            text = text[at + len(marker):]
        return ids


def write_tiny_qwen3_reranker(
    path: str | Path,
    *,
    seed: int = 0,
    classifier_head: bool = True,
    pooling: str | None = "rank",
    name: str = TINY_RERANKER_NAME,
) -> TinyReranker:
    """Write a tiny F32 Qwen3-Reranker (pooling RANK, labels yes/no) and return it.

    ``classifier_head=False`` leaves out ``cls.output.weight`` and ``pooling=None`` the
    pooling key, as conversions made before llama.cpp learnt Qwen3-Reranker do: llama.cpp
    then scores everything ~0.
    The head's rows are scaled up so that the two logits differ by a few units, and a
    score computed at the wrong token or without the head misses the reference clearly.
    """
    path = Path(path)
    config = replace(TINY_CONFIG, n_vocab=TINY_CONFIG.n_vocab + len(CHAT_MARKERS))
    rng = np.random.default_rng(seed)
    weights = tiny_weights(config, rng)
    if classifier_head:
        head = rng.standard_normal((len(RERANK_LABELS), config.n_embd)) * HEAD_SCALE
        weights[CLASSIFIER_TENSOR] = head.astype(np.float32)
    writer = GGUFWriter(path, ARCH)
    write_metadata(
        writer, config, name=name, add_eos_token=False, pooling=pooling,
        file_type=LlamaFileType.ALL_F32, extra_control=CHAT_MARKERS,
    )
    # add_classifier_output_labels() is newer than gguf 0.17, the lowest version we support
    writer.add_array(f"{ARCH}.classifier.output_labels", list(RERANK_LABELS))
    finish_gguf(writer, weights)
    first_marker = reference.EOS_ID + 1
    marker_ids = {marker: first_marker + i for i, marker in enumerate(CHAT_MARKERS)}
    return TinyReranker(path=path, config=config, weights=weights, marker_ids=marker_ids)
