#!/usr/bin/env python3
"""PDF extraction against embedding: is parsing documents ever the bottleneck?

A generated 300-page PDF (about 330 words a page, a large-font heading every 10 pages)
is measured four ways in one run:

1. extraction alone, in this process (best of 3): pages/s of ``documents.extract``;
2. extraction through the sandbox (pipe, limits), once with a running worker and once
   starting it (a process start per indexing run, not per file);
3. ``Indexer.run`` end to end with the tiny test model, and extraction's share of it
   (the engine's own timers say how much of it was embedding);
4. the embedding of the very same embed texts with the shape-true random
   Qwen3-Embedding-0.6B Q8_0 (written once into .bench/): a sample of the chunks is
   embedded and the time for all of them extrapolated by tokens, since embedding the
   whole book on a CPU takes over an hour.

    python scripts/bench_extract.py                  # 300 pages, 12 chunks sampled for 0.6B
    python scripts/bench_extract.py --pages 100 --sample 0
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from edge_embed.documents import Limits, extract
from edge_embed.documents.sandbox import Sandbox
from edge_embed.indexer import IndexOptions, Indexer
from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.loader import ModelHandle
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, plan_for
from edge_embed.store import Store
from edge_embed.testing import write_shape_true_qwen3, write_tiny_qwen3
from edge_embed.testing.documents import pdf_bytes

BENCH_DIR = Path(__file__).resolve().parent.parent / ".bench"
WORDS = ("index vector query store chunk token model search file folder note python embed "
         "database sqlite keyword rank fusion budget garden travel kernel backup music").split()


def generated_book(pages: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    words = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    content = []
    for page in range(pages):
        paragraphs = [f"# Chapter {page // 10 + 1}: {words(3)}"] if page % 10 == 0 else []
        paragraphs += [words(rng.randint(60, 100)) + "." for _ in range(4)]
        content.append(paragraphs)
    return pdf_bytes(content)


class RecordingEmbedder(Embedder):
    """Keeps the texts the pipeline sent, to replay them through the bare engine."""

    def embed_documents(self, texts, dims=None, on_decode=None):
        self.sent.extend(texts)
        return super().embed_documents(texts, dims, on_decode)


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def load(model: Path, threads: int, recording: bool = False) -> Embedder:
    info = read_model_info(model)
    plan = plan_for(ModelShape.from_model_info(info), RuntimeSettings(threads=threads, force_cpu=True))
    engine = (RecordingEmbedder if recording else Embedder)(info, plan, label=str(model))
    engine.sent = []
    engine.count_tokens("warm up")  # loads the weights before any clock starts
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=300)
    parser.add_argument("--sample", type=int, default=12, help="chunks embedded with the 0.6B model (0: skip it)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    data = generated_book(args.pages)
    print(f"PDF: {args.pages} pages, {len(data) / 1e6:.1f} MB")

    runs = [timed(lambda: extract("pdf", data, Limits()))[0] for _ in range(3)]
    document = extract("pdf", data, Limits())
    print(f"\n1. extraction in process: {args.pages / min(runs):,.0f} pages/s "
          f"(best {min(runs):.2f} s of {', '.join(f'{r:.2f}' for r in runs)}; "
          f"{len(document.text):,} characters, {len(document.layout.headings)} headings)")
    with Sandbox() as sandbox:
        cold_s, _ = timed(lambda: sandbox.extract("pdf", data))
        sandbox_s, _ = timed(lambda: sandbox.extract("pdf", data))
    print(f"2. through the sandbox: {sandbox_s:.2f} s, {args.pages / sandbox_s:,.0f} pages/s with the worker running;"
          f" {cold_s:.2f} s when the first document also starts the worker")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        (folder / "book.pdf").write_bytes(data)
        tiny = load(write_tiny_qwen3(Path(tmp) / "tiny.gguf").path, args.threads, recording=True)
        with Store.open(Path(tmp) / "index.db") as store:
            index_s, summary = timed(lambda: Indexer(store, ModelHandle.from_embedder(tiny), IndexOptions()).run([folder]))
        texts, tokens, tiny_embed_s = tiny.sent, summary.tokens_embedded, tiny.stats.decode_s + tiny.stats.tokenize_s
        tiny.close()
    print(f"\n3. index end to end, tiny model: {index_s:.2f} s for {summary.chunks_added} chunks, {tokens:,} tokens;"
          f" extraction (sandbox, cold) is {100 * cold_s / index_s:.1f} % of it")
    print(f"   of which the tiny model embedding (tokenize + decode): {tiny_embed_s:.2f} s")

    if args.sample:
        model = BENCH_DIR / "qwen3-embedding-0.6b-Q8_0-random.gguf"
        if not model.exists():
            BENCH_DIR.mkdir(exist_ok=True)
            write_shape_true_qwen3(model, "0.6b", "Q8_0")
        big = load(model, args.threads)
        sample = texts[: args.sample]
        sample_tokens = sum(big.count_tokens(text) + 1 for text in sample)
        sample_s, _ = timed(lambda: big.embed_documents(sample))
        big.close()
        rate = sample_tokens / sample_s
        whole_s = tokens / rate
        print(f"\n4. shape-true 0.6B Q8_0 ({args.threads} threads): {rate:,.0f} tokens/s on {len(sample)} chunks "
              f"({sample_tokens:,} tokens, {sample_s:.1f} s)")
        print(f"   all {tokens:,} tokens: ~{whole_s:,.0f} s; extraction is {100 * cold_s / (cold_s + whole_s):.2f} %"
              f" of indexing the book")


if __name__ == "__main__":
    main()
