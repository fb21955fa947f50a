"""edge-embed: private, offline semantic search on a desktop.

Data flows one way: files -> text -> chunks -> embeddings -> store -> search -> rendering.
The library is usable on its own; ``edge_embed.cli`` is a thin click layer over it.
"""

__version__ = "0.1.0"

__all__ = ["Index", "TextEmbedder", "TextReranker", "__version__"]


def __getattr__(name: str):
    """``edge_embed.Index`` / ``TextEmbedder`` / ``TextReranker`` without importing them up front:
    ``import edge_embed`` (and so every CLI start) stays cheap."""
    if name in ("Index", "TextEmbedder", "TextReranker"):
        from edge_embed import api

        return getattr(api, name)
    raise AttributeError(f"module 'edge_embed' has no attribute {name!r}")
