"""Real embeddings for scripts/bench_search.py: MiniLM vectors of text found on this machine.

The text is package documentation (``/usr/share/doc``: READMEs, changelogs, copyright
files, gzipped or not; the ``METADATA`` descriptions and docs of the installed Python
packages), not man pages and not the Python standard library. Paragraphs of 80 to 1,500
characters, deduplicated, each one chunk. The vectors and texts are written once under the
cache and reused.
"""

from __future__ import annotations

import gzip
import json
import site
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

MIN_CHARS, MAX_CHARS = 80, 1500
EMBED_BATCH = 256
DOC_SUFFIXES = {".md", ".rst", ".txt", ".markdown", ""}


def doc_files() -> Iterator[Path]:
    """Documentation files in a fixed order: /usr/share/doc, then site-packages' own docs."""
    yield from sorted(p for p in Path("/usr/share/doc").rglob("*") if p.is_file())
    for packages in site.getsitepackages():
        root = Path(packages)
        yield from sorted(root.glob("*.dist-info/METADATA"))
        yield from sorted(p for p in root.rglob("*") if p.suffix in {".md", ".rst"} and p.is_file())


def read_text(path: Path) -> str:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError):
        return ""
    if b"\0" in raw[:4096]:
        return ""  # binary
    return raw.decode("utf-8", errors="replace")


def paragraphs(limit: int) -> list[str]:
    """Up to ``limit`` distinct paragraphs of documentation text."""
    seen: dict[str, None] = {}
    for path in doc_files():
        if path.suffix not in DOC_SUFFIXES | {".gz"}:
            continue
        for block in read_text(path).split("\n\n"):
            text = " ".join(block.split())
            if MIN_CHARS <= len(text) <= MAX_CHARS:
                seen[text] = None
                if len(seen) == limit:
                    return list(seen)
    return list(seen)


def minilm_corpus(cache: Path, model: Path, limit: int) -> tuple[Path, list[str]]:
    """(vectors .npy, texts) of up to ``limit`` paragraphs embedded with the MiniLM model."""
    vectors_path = cache / f"minilm-{limit}.npy"
    texts_path = cache / f"minilm-{limit}.json"
    if vectors_path.exists() and texts_path.exists():
        return vectors_path, json.loads(texts_path.read_text())
    from edge_embed.runtime.loader import load_embedder
    from edge_embed.runtime.plan import RuntimeSettings

    texts = paragraphs(limit)
    embedder = load_embedder(str(model), RuntimeSettings(force_cpu=True))
    parts = []
    for start in range(0, len(texts), EMBED_BATCH):
        parts.append(embedder.embed_documents(texts[start : start + EMBED_BATCH]))
        print(f"  embedded {start + len(parts[-1]):,}/{len(texts):,}", file=sys.stderr, flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(vectors_path, np.concatenate(parts).astype(np.float32))
    texts_path.write_text(json.dumps(texts))
    return vectors_path, texts
