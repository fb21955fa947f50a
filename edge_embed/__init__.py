"""edge-embed: private, offline semantic search on a desktop.

Data flows one way: files -> text -> chunks -> embeddings -> store -> search -> rendering.
The library is usable on its own; ``edge_embed.cli`` is a thin click layer over it.
"""

__version__ = "0.1.0"
