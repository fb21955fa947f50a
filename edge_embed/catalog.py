"""The model catalog: the Qwen3-Embedding GGUF files edge-embed knows by name.

The catalog is data (``models/catalog.toml``, package data of ``edge_embed.models``), so
adding a model or a quantization is an edit to one TOML file. Each entry also carries the
architecture shape, because the GPU planner must size a model *before* it is downloaded
(``edge-embed doctor`` on a fresh machine); once the file exists, ``modelfile`` reads the
real shape from its header.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from functools import lru_cache
from pathlib import Path

from edge_embed.errors import EdgeEmbedError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CATALOG_FILE = "catalog.toml"


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable model: where it lives on the hub and what shape it has."""

    name: str
    description: str
    repo: str
    file: str
    quant: str
    approx_size_bytes: int
    dims: int
    min_dims: int
    context: int
    query_instruction: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ff: int
    kind: str = "embedding"  # or "reranker": rescoring only, never for indexing

    @property
    def approx_size(self) -> str:
        """The catalog size for people: "~2.5 GB" (the catalog's sizes are rounded)."""
        return f"~{format_gb(self.approx_size_bytes)}"


ENTRY_FIELDS = frozenset(f.name for f in fields(CatalogEntry))
REQUIRED_FIELDS = frozenset(f.name for f in fields(CatalogEntry) if f.default is MISSING)


@dataclass(frozen=True)
class Chunking:
    """A new index's chunk size and overlap for one model family, and the evidence for them."""

    family: str
    chunk_tokens: int
    overlap: int
    reason: str
    architectures: tuple[str, ...] = ()  # GGUF general.architecture values; () for the default


@dataclass(frozen=True)
class _Catalog:
    default: str
    cpu_default: str
    entries: tuple[CatalogEntry, ...]


def format_gb(n_bytes: int) -> str:
    """Bytes as decimal gigabytes with one decimal, the unit the hub shows file sizes in."""
    return f"{n_bytes / 1e9:.1f} GB"


def load_catalog() -> list[CatalogEntry]:
    """All catalog entries, in the order the TOML lists them (the order `models` prints)."""
    return list(_read_catalog().entries)


def find_entry(name: str) -> CatalogEntry | None:
    """The entry called ``name`` (case-insensitive), or None; for callers that also accept paths."""
    wanted = name.strip().lower()
    return next((e for e in _read_catalog().entries if e.name.lower() == wanted), None)


def get_entry(name: str) -> CatalogEntry:
    """The entry called ``name``; an unknown name is a user error that lists the known ones."""
    entry = find_entry(name)
    if entry is None:
        known = ", ".join(e.name for e in _read_catalog().entries)
        raise EdgeEmbedError(
            f"unknown model {name!r}; known models: {known}", kind="not_found", param="model", hint="{models}"
        )
    return entry


def chunking_for(architecture: str) -> Chunking:
    """The chunking a new index gets with a model of this GGUF architecture ("bert", "qwen3").

    Chunk size is a model property: retrieval is best near the input length a model was
    trained on. Each family's figures and their reason are data in catalog.toml.
    """
    *families, default = load_chunking()
    return next((f for f in families if architecture in f.architectures), default)


def load_chunking() -> list[Chunking]:
    """Every family's chunking, in catalog order, the default (every other family) last."""
    families, default = _read_chunking()
    return [*families, default]


def chunking_summary(field: str) -> str:
    """'256 for BERT-family models, else 512' for ``field`` chunk_tokens or overlap: help texts."""
    *families, default = load_chunking()
    named = ", ".join(f"{getattr(f, field)} for {f.family}-family models" for f in families)
    return f"{named}, else {getattr(default, field)}" if named else str(getattr(default, field))


@lru_cache(maxsize=1)
def _read_chunking() -> tuple[tuple[Chunking, ...], Chunking]:
    data = tomllib.loads(_catalog_text())
    try:
        families = tuple(Chunking(**{**raw, "architectures": tuple(raw["architectures"])}) for raw in data["chunking"])
        return families, Chunking(**data["chunking_default"])
    except (KeyError, TypeError) as exc:
        raise EdgeEmbedError(f"{CATALOG_FILE}: malformed [[chunking]] / [chunking_default] ({exc}); reinstall edge-embed") from None


@lru_cache(maxsize=1)
def _read_catalog() -> _Catalog:
    data = tomllib.loads(_catalog_text())
    defaults = data.get("defaults", {})
    entries = tuple(_entry_from_toml({**defaults, **raw}) for raw in data.get("model", []))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise EdgeEmbedError(f"{CATALOG_FILE} lists a model name twice: {names}; reinstall edge-embed")
    default, cpu_default = data.get("default"), data.get("cpu_default")
    for key, name in (("default", default), ("cpu_default", cpu_default)):
        if name not in names:
            raise EdgeEmbedError(f"{CATALOG_FILE}: {key} model {name!r} is not in the catalog; reinstall edge-embed")
    return _Catalog(default=default, cpu_default=cpu_default, entries=entries)


def _catalog_text() -> str:
    """The shipped catalog.toml.

    Installed, it is package data of ``edge_embed.models`` (``edge_embed/models/``); in a
    source checkout (or an editable install), ``models/`` sits next to the ``edge_embed``
    package directory. Read as a plain file: importing importlib.resources would cost
    every command's start, `query` through a server included, more than the read.
    """
    package_dir = Path(__file__).resolve().parent
    for path in (package_dir / "models" / CATALOG_FILE, package_dir.parent / "models" / CATALOG_FILE):
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise EdgeEmbedError(f"{CATALOG_FILE} is missing from {package_dir}; reinstall edge-embed")


def _entry_from_toml(raw: dict) -> CatalogEntry:
    """Build an entry, naming the model and the keys when the TOML does not match the dataclass."""
    missing = sorted(REQUIRED_FIELDS - raw.keys())
    unknown = sorted(raw.keys() - ENTRY_FIELDS)
    if missing or unknown:
        raise EdgeEmbedError(
            f"{CATALOG_FILE}: model {raw.get('name', '?')!r} has missing keys {missing} / unknown keys {unknown}"
        )
    return CatalogEntry(**raw)


def reranker_entries() -> list[CatalogEntry]:
    """The catalog's rerankers, the first being the default for ``query --rerank``."""
    return [e for e in _read_catalog().entries if e.kind == "reranker"]


DEFAULT_MODEL: str = _read_catalog().default  # when it fits whole on a GPU (runtime/choice.py)
CPU_DEFAULT_MODEL: str = _read_catalog().cpu_default
DEFAULT_RERANKER: str = reranker_entries()[0].name
