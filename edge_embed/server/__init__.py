"""`edge-embed serve`: one warm engine behind HTTP (OpenAI embeddings, search, MCP).

Kept empty on purpose: ``discovery`` and ``client`` are imported by the CLI's fast path,
which must not pay for Starlette, numpy or llama.cpp.
"""
