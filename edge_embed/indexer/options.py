"""How a run walks and chunks, and what the index records of it (``IndexSettings``)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

from edge_embed.catalog import chunking_for
from edge_embed.chunking import CHUNKER_VERSION
from edge_embed.documents import Limits
from edge_embed.errors import EdgeEmbedError
from edge_embed.files import DEFAULT_MAX_DOCUMENT_SIZE, DEFAULT_MAX_FILE_SIZE
from edge_embed.store import CompactPolicy, IndexSettings

if TYPE_CHECKING:
    from edge_embed.runtime.loader import ModelHandle


@dataclass(frozen=True)
class IndexOptions:
    """How to walk and chunk; chunk_tokens/overlap/dims are fixed per index (see IndexSettings).

    The index's own settings (chunking, dims, query task) default to None, meaning "what
    the index already has" (a plain re-run, and a ``--rebuild`` that does not name them,
    keep them), else the defaults; ``resolve_options`` decides, in one place.
    """

    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    hidden: bool = False
    follow_links: bool = False  # also symlinks that lead outside the folder (files.discover)
    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE
    document_limits: Limits = Limits()
    chunk_tokens: int | None = None
    overlap: int | None = None
    dims: int | None = None
    instruction: str | None = None
    auto_compact: CompactPolicy | None = CompactPolicy()  # None: never compact at the end of a run

    @property
    def narrowed(self) -> bool:
        """Whether --include/--exclude narrow this run (then it deletes only files gone from disk)."""
        return bool(self.include or self.exclude)


def resolve_options(options: IndexOptions, stored: IndexSettings | None, model: ModelHandle) -> IndexOptions:
    """Fill the settings the caller left None from the index's own ``stored`` ones, else defaults.

    The chunking defaults are the model family's (``catalog.chunking_for``): an index
    keeps its own chunking across model changes and rebuilds unless told otherwise. The
    dimension is kept only with the same model (``is_same_model``): another model's native
    width can differ, so a rebuild with a new model starts from its native width.
    """
    same_model = is_same_model(stored, model)

    def kept(value, field_name: str, default):
        if value is not None:
            return value
        return getattr(stored, field_name) if stored is not None else default

    dims = options.dims
    if dims is None and same_model:
        dims = stored.dims
    family = chunking_for(model.info.architecture)
    return replace(
        options,
        chunk_tokens=kept(options.chunk_tokens, "chunk_tokens", family.chunk_tokens),
        overlap=kept(options.overlap, "overlap", family.overlap),
        dims=model.check_dims(dims),
        instruction=kept(options.instruction, "instruction", None),
    )


def is_same_model(stored: IndexSettings | None, model: ModelHandle) -> bool:
    """The index's model: the same GGUF header hash; a server's model (--embed-url, no
    header to hash) by its name."""
    if stored is None:
        return False
    if stored.model_hash or model.info.header_hash:
        return stored.model_hash == model.info.header_hash
    return stored.model_label == model.label


def index_settings(model: ModelHandle, options: IndexOptions) -> IndexSettings:
    """What an index records and later refuses to mix: model, dimension, chunking.

    ``options`` must be resolved (``resolve_options``). Raises EdgeEmbedError for options
    the model cannot honour, before any file is indexed.
    """
    if options.chunk_tokens > model.max_tokens:
        raise EdgeEmbedError(
            f"chunks of {options.chunk_tokens} tokens are larger than the model context in use ({model.max_tokens})",
            param="chunk_tokens", hint="lower {chunk_tokens} or raise {ctx}",
        )
    return IndexSettings(
        model_label=model.label,
        model_file=str(model.info.path),
        model_size=model.info.file_size,
        model_hash=model.info.header_hash,
        dims=model.check_dims(options.dims),
        chunk_tokens=options.chunk_tokens,
        overlap=options.overlap,
        instruction=options.instruction,
        chunker_version=CHUNKER_VERSION,
    )
