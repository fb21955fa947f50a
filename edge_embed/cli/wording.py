"""The CLI's words for a library error or text (``errors.Phrase``): its inputs as the
flags that set them, its operations as the commands that run them (``errors.TERMS``; HTTP
and MCP have their own).

Imported by the group's error handling on every failure, so it imports nothing heavy.
"""

from __future__ import annotations

from edge_embed.errors import EdgeEmbedError, Phrase, say

CLI_WORDS = {
    # inputs and settings: the flag that sets each
    "k": "-k",
    "in_paths": "--in",
    "per_file": "--per-file",
    "min_score": "--min-score",
    "mode": "--mode",
    "rerank": "--rerank",
    "rerank_top": "--rerank-top",
    "rerank_on": "--rerank",
    "no_rerank": "--no-rerank",
    "input": "the text",
    "model": "--model",
    "reranker": "--reranker",
    "dims": "--dims",
    "ctx": "--ctx",
    "batch": "--batch",
    "gpu_layers": "--gpu-layers",
    "cpu": "--cpu",
    "embed_url": "--embed-url",
    "db": "--db FILE",
    "include": "--include",
    "exclude": "--exclude",
    "chunk_tokens": "--chunk-tokens",
    "follow_links": "--follow-links",
    "rebuilding": "--rebuild",
    "queries": "the queries file",
    "split": "--split",
    "compare": "the --compare file",
    # operations: the command that does each
    "index": "run `edge-embed index FOLDER`",
    "rebuild": "run `edge-embed index --rebuild FOLDER`",
    "pull": "run `edge-embed pull {model_name}`",
    "remove": "run `edge-embed remove {root}`",
    "status": "run `edge-embed status`",
    "models": "run `edge-embed models`",
    "stop_watch": "stop it (Ctrl-C, or end `serve --watch`)",
    "index_again": "run `edge-embed index {root}`",
    "pulling": "`edge-embed pull {model_name}`",
    "removing": "`edge-embed remove {root}`",
    "eval_json": "the output of `edge-embed eval --json`",
}


def cli_message(error: EdgeEmbedError) -> str:
    """The one line after ``Error:``: the message, then the hint in flags and commands."""
    return error.render(CLI_WORDS)


def cli_text(text: str | Phrase) -> str:
    """A library text (a rerank reason, a plan's note...) in flags and commands."""
    return say(text, CLI_WORDS)
