"""Embedding-like synthetic vectors for scripts/bench_search.py, built once and reused.

Random unit vectors are the worst case for a coarse (quantised) first stage: every
neighbour is a near-tie. Real embeddings have a decaying spectrum (a few directions carry
most of the variance), so these are Gaussian with a power-law spectrum (the variance of
component i is i^-ALPHA) under one random rotation, normalised to unit length. Queries are
perturbed copies of known documents: the planted document should come first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALPHA = 1.0  # variance of component i ~ i^-ALPHA
QUERY_NOISE = 0.5  # the perturbation's norm relative to a document's (cosine to it ~0.86)
ROWS_PER_STEP = 50_000  # generated and written this many at a time (bounded memory)


def spectrum(dims: int) -> np.ndarray:
    """Per-component standard deviations, power-law decaying."""
    return (np.arange(1, dims + 1, dtype=np.float32) ** (-ALPHA / 2)).astype(np.float32)


def rotation(dims: int, seed: int) -> np.ndarray:
    """A random orthogonal matrix (QR of a Gaussian one)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dims, dims)).astype(np.float32))
    return q.astype(np.float32)


def embedding_like(rng: np.random.Generator, n: int, rot: np.ndarray) -> np.ndarray:
    """n unit vectors with the power-law spectrum under the rotation ``rot``."""
    rows = (rng.standard_normal((n, rot.shape[0]), dtype=np.float32) * spectrum(rot.shape[0])) @ rot.T
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def synthetic_path(folder: Path, n: int, dims: int, seed: int = 0) -> Path:
    return folder / f"synthetic-{n}x{dims}-a{ALPHA}-s{seed}.npy"


def write_synthetic(folder: Path, n: int, dims: int, seed: int = 0) -> Path:
    """The n x dims corpus as a float32 .npy file (written once; reused when it exists)."""
    path = synthetic_path(folder, n, dims, seed)
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, dims))
    rng = np.random.default_rng(seed)
    rot = rotation(dims, seed)
    for start in range(0, n, ROWS_PER_STEP):
        stop = min(start + ROWS_PER_STEP, n)
        out[start:stop] = embedding_like(rng, stop - start, rot)
    out.flush()
    del out
    partial.rename(path)
    return path


def perturbed_queries(vectors: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(queries, planted row indices): each query is a known row plus spectrum-shaped noise."""
    rng = np.random.default_rng(seed + 1)
    planted = rng.choice(len(vectors), size=count, replace=False)
    dims = vectors.shape[1]
    noise = embedding_like(rng, count, rotation(dims, seed)) * QUERY_NOISE
    queries = np.asarray(vectors[planted], dtype=np.float32) + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries, planted
