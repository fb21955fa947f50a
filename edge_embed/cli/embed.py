"""``edge-embed embed``: print embeddings as JSON (for scripts, checks and curiosity)."""

from __future__ import annotations

import json
import os
import sys

import click

from edge_embed.cli.common import warnings_to_stderr
from edge_embed.cli.options import embed_url_option, runtime_options, settings_from_options
from edge_embed.errors import EdgeEmbedError

PROMPT_FORMATS = {"auto": None, "qwen3": True, "plain": False}


@click.command()
@click.argument("texts", nargs=-1)
@click.option("--query", "-q", "as_query", is_flag=True,
              help="Embed as search queries (Qwen3: 'Instruct: {task}\\nQuery:{text}'). "
                   "Without it, texts are embedded as documents.")
@click.option("--instruct", metavar="TASK",
              help="The task sentence of the query instruction (implies --query).")
@click.option("--dims", type=int, metavar="N",
              help="Matryoshka dimension: keep the first N components, re-normalised (32..native).")
@click.option("--jsonl", is_flag=True, help="One JSON object per input and line, with its text.")
@click.option("--prompt-format", type=click.Choice(list(PROMPT_FORMATS)), default="auto",
              show_default=True,
              help="qwen3: EOS always appended and queries get the instruction; plain: the "
                   "model's own special tokens only; auto: qwen3 for Qwen3 embedding models.")
@click.option("--no-server", is_flag=True,
              help="Embed in this process even when `edge-embed serve` runs with this model.")
@embed_url_option
@runtime_options
def embed(texts, as_query, instruct, dims, jsonl, prompt_format, no_server, embed_url, **runtime) -> None:
    """Embed TEXTS (or lines of stdin) and print L2-normalised vectors as JSON.

    \b
    Examples:
      edge-embed embed "hello world"
      edge-embed embed --query "how do I rotate the API keys?"
      edge-embed embed --dims 256 --jsonl < sentences.txt
      edge-embed embed --model ./bge-small-en-v1.5-q8_0.gguf "any GGUF embedding model"

    The default output is a JSON array with one vector per input.
    """
    from edge_embed.api import TextEmbedder

    warnings_to_stderr()
    inputs = list(texts) or read_stdin_lines()
    check_texts(inputs)
    input_type = "query" if as_query else "document"
    model = runtime.pop("model")
    vectors = None
    if not no_server and not embed_url and prompt_format == "auto":
        vectors = embed_through_server(model, inputs, input_type, instruct, dims)
    if vectors is None:
        embedder = TextEmbedder.open(
            model, settings_from_options(**runtime), qwen3_format=PROMPT_FORMATS[prompt_format], embed_url=embed_url
        )
        vectors = [row.tolist() for row in embedder.embed(inputs, input_type=input_type, instruct=instruct, dims=dims)]
    if jsonl:
        for i, (text, vector) in enumerate(zip(inputs, vectors)):
            click.echo(json.dumps({"index": i, "text": text, "embedding": vector}, ensure_ascii=False))
    else:
        click.echo(json.dumps(vectors))


def embed_through_server(model: str | None, texts: list[str], input_type: str, instruct: str | None, dims: int | None):
    """Vectors (lists of floats) from a running `edge-embed serve` of this model, or None.

    The model is named as the server names it: the catalog name, else the file's path.
    """
    from edge_embed.catalog import DEFAULT_MODEL
    from edge_embed.server import client

    label = model or DEFAULT_MODEL
    if label.endswith(".gguf") or os.sep in label:
        label = os.path.abspath(os.path.expanduser(label))
    body = {"input": texts, "model": label, "input_type": input_type, "instruct": instruct, "dimensions": dims}
    return client.embed(label, body)


def read_stdin_lines() -> list[str]:
    """Non-blank lines of stdin; refuses to wait on an interactive terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        raise EdgeEmbedError("give TEXT arguments or pipe lines on stdin (see edge-embed embed --help)")
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]


def check_texts(texts: list[str]) -> None:
    if not texts:
        raise EdgeEmbedError("nothing to embed: stdin had no non-blank lines")
    for i, text in enumerate(texts, 1):
        if not text.strip():
            raise EdgeEmbedError(f"text {i} is empty: nothing to embed")
