"""Inspect a GGUF model file without loading it into llama.cpp.

The GPU planner needs per-layer tensor sizes and attention shapes, the engine needs the
pooling type and whether the file asks for an EOS token, and the downloader needs to tell
a complete file from a truncated one. All of that is in the GGUF header, which the
maintained ``gguf`` package reads (we never hand-parse GGUF).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from edge_embed.errors import ModelFileError
from edge_embed.config import current

GGUF_MAGIC = b"GGUF"
POOLING_NAMES = {0: "none", 1: "mean", 2: "cls", 3: "last", 4: "rank"}
HEADER_HASH_BYTES = 1 << 20
SIDECAR_VERSION = 2  # bump when ModelInfo changes
_BLOCK_TENSOR = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class Hyperparameters:
    """A transformer's sizes as a GGUF header states them (``{arch}.block_count``,
    ``.embedding_length``, ``.attention.head_count``...): one list for the file's
    ``ModelInfo``, the GPU planner's ``ModelShape`` and the tests' reference forward pass."""

    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    context_length: int


@dataclass(frozen=True)
class ModelInfo(Hyperparameters):
    """What edge-embed needs to know about a GGUF file, read from its header."""

    path: Path
    file_size: int
    architecture: str
    name: str
    pooling: str | None
    add_eos_token: bool | None
    eos_token_id: int | None
    layer_bytes: tuple[int, ...] = field(repr=False)
    other_bytes: int = 0
    output_bytes: int = 0
    header_hash: str = ""
    n_cls_out: int = 0  # rows of the classifier head cls.output.weight (a reranker's yes/no); 0 = none

    @property
    def is_reranker(self) -> bool:
        """A reranker declares RANK pooling (Qwen3-Reranker as converted by llama.cpp)."""
        return self.pooling == "rank"

    @property
    def is_qwen3_embedding(self) -> bool:
        """Qwen3 embedding models want last-token pooling and the query instruction."""
        if self.architecture != "qwen3":
            return False
        return self.pooling == "last" or "embedding" in self.name.lower()

    @property
    def weights_bytes(self) -> int:
        return sum(self.layer_bytes) + self.other_bytes


def check_gguf_header(path: Path) -> None:
    """Raise ModelFileError unless ``path`` exists and starts with the GGUF magic."""
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelFileError(f"model path is not a file: {path}")
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF model file (it does not start with 'GGUF')")


def read_model_info(path: str | Path) -> ModelInfo:
    """Read a GGUF's header; raise ModelFileError for a missing, foreign or truncated file."""
    path = Path(path).expanduser().resolve()
    check_gguf_header(path)
    stat = path.stat()
    return _read_model_info_cached(path, stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_model_info_cached(path: Path, size: int, mtime_ns: int) -> ModelInfo:
    """Parsing a real model's header takes seconds (the gguf package reads all 151k
    vocabulary strings and merges), so the result is kept on disk beside other caches,
    keyed by path, size and mtime: every command after the first starts at once."""
    sidecar = _sidecar_path(path, size, mtime_ns)
    cached = _load_sidecar(sidecar)
    if cached is not None:
        return cached
    info = _parse_model_info(path, size)
    _save_sidecar(sidecar, info)
    return info


def _sidecar_path(path: Path, size: int, mtime_ns: int) -> Path:
    key = hashlib.sha256(f"{SIDECAR_VERSION}|{path}|{size}|{mtime_ns}".encode()).hexdigest()[:32]
    return current().cache_dir / "gguf-headers" / f"{key}.json"


def _load_sidecar(sidecar: Path) -> ModelInfo | None:
    try:
        data = json.loads(sidecar.read_text())
        data["path"] = Path(data["path"])
        data["layer_bytes"] = tuple(data["layer_bytes"])
        return ModelInfo(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _save_sidecar(sidecar: Path, info: ModelInfo) -> None:
    """Best effort: a read-only cache directory only costs the next command its seconds."""
    data = asdict(info)
    data["path"] = str(info.path)
    try:
        sidecar.parent.mkdir(parents=True, exist_ok=True)
        temporary = sidecar.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data))
        temporary.replace(sidecar)
    except OSError:
        pass


def _parse_model_info(path: Path, size: int) -> ModelInfo:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # the gguf package raises bare ValueErrors, IndexErrors...
        raise ModelFileError(
            f"{path} is truncated or corrupt ({exc.__class__.__name__}); delete it and download it again"
        ) from None
    needed = max((t.data_offset + t.n_bytes for t in reader.tensors), default=0)
    if needed > size:
        raise ModelFileError(
            f"{path} is truncated: {size} of {needed} bytes; delete it and download it again"
        )
    arch = _field(reader, "general.architecture") or "unknown"
    n_embd = int(_field(reader, f"{arch}.embedding_length") or 0)
    n_head = int(_field(reader, f"{arch}.attention.head_count") or 1)
    pooling_id = _field(reader, f"{arch}.pooling_type")
    layer_bytes, other_bytes, output_bytes = _tensor_bytes(reader)
    return ModelInfo(
        path=path,
        file_size=size,
        architecture=str(arch),
        name=str(_field(reader, "general.name") or _field(reader, "general.basename") or path.stem),
        n_layer=int(_field(reader, f"{arch}.block_count") or len(layer_bytes)),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=int(_field(reader, f"{arch}.attention.head_count_kv") or n_head),
        head_dim=int(_field(reader, f"{arch}.attention.key_length") or n_embd // max(n_head, 1)),
        n_ff=int(_field(reader, f"{arch}.feed_forward_length") or 4 * n_embd),
        n_vocab=_vocab_size(reader),
        context_length=int(_field(reader, f"{arch}.context_length") or 512),
        pooling=POOLING_NAMES.get(int(pooling_id)) if pooling_id is not None else None,
        add_eos_token=_optional_bool(_field(reader, "tokenizer.ggml.add_eos_token")),
        eos_token_id=_optional_int(_field(reader, "tokenizer.ggml.eos_token_id")),
        layer_bytes=layer_bytes,
        other_bytes=other_bytes,
        output_bytes=output_bytes,
        header_hash=_header_hash(path),
        n_cls_out=_classifier_rows(reader),
    )


def _field(reader, key: str):
    found = reader.get_field(key)
    if found is None:
        return None
    value = found.contents()
    return value


def _vocab_size(reader) -> int:
    """Rows of the token embedding (cheaper than reading the whole token list)."""
    for tensor in reader.tensors:
        if tensor.name == "token_embd.weight":
            return int(tensor.shape[-1]) if len(tensor.shape) > 1 else 0
    return 0


def _classifier_rows(reader) -> int:
    """Outputs of the classifier head ``cls.output.weight`` (2 for Qwen3-Reranker), 0 when absent."""
    for tensor in reader.tensors:
        if tensor.name == "cls.output.weight":
            return int(tensor.shape[-1]) if len(tensor.shape) > 1 else 1
    return 0


def _optional_bool(value) -> bool | None:
    return None if value is None else bool(value)


def _optional_int(value) -> int | None:
    return None if value is None else int(value)


def _tensor_bytes(reader) -> tuple[tuple[int, ...], int, int]:
    """Bytes per transformer block, bytes of everything else, and of the output head."""
    per_layer: dict[int, int] = {}
    other = output = 0
    for tensor in reader.tensors:
        match = _BLOCK_TENSOR.match(tensor.name)
        if match:
            index = int(match.group(1))
            per_layer[index] = per_layer.get(index, 0) + int(tensor.n_bytes)
        else:
            other += int(tensor.n_bytes)
            if tensor.name.startswith("output."):
                output += int(tensor.n_bytes)
    layers = tuple(per_layer.get(i, 0) for i in range(max(per_layer, default=-1) + 1))
    return layers, other, output


def _header_hash(path: Path) -> str:
    """sha256 of the first MiB: identifies a model file cheaply (metadata + first tensors)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        digest.update(fh.read(HEADER_HASH_BYTES))
    return digest.hexdigest()[:16]
