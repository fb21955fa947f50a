"""`edge-embed models` (what can be downloaded, what is) and `edge-embed pull` (download one)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from edge_embed.catalog import CatalogEntry, find_entry, get_entry, load_catalog
from edge_embed.runtime.choice import ModelChoice
from edge_embed.cli.wording import cli_text
from edge_embed.config import current
from edge_embed.download import MODEL_ENV, HubSettings, cached_model_path, looks_like_model_path, machine_default, pull as pull_model

DEFAULT_MARK = "*"
ENV_MARK = ">"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalog and download state as JSON.")
def models(as_json: bool) -> None:
    """List the models edge-embed can download, and which ones are downloaded.

    Sizes are approximate. `*` marks the default model and `>` the one EDGE_EMBED_MODEL
    selects: that one is used when a command gets no --model. --model also accepts the
    path of any local .gguf file.

    \b
    Examples:
      edge-embed models
      edge-embed pull qwen3-embedding-0.6b
      EDGE_EMBED_MODEL=qwen3-embedding-0.6b edge-embed index ~/notes
      edge-embed models --json | jq -r '.models[] | select(.downloaded) | .path'
    """
    env_model = current().model
    choice = machine_default()
    states = [_ModelState.of(entry, env_model, choice.name) for entry in load_catalog()]
    if as_json:
        report = {
            "default": choice.name,
            "default_reason": cli_text(choice.reason),
            "env_model": env_model,
            "cache_dir": str(HubSettings.from_env().cache_dir),
            "models": [state.as_json() for state in states],
        }
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(_models_table(states))
    click.echo(_models_footer(env_model, choice))


@click.command()
@click.argument("name", required=False)
def pull(name: str | None) -> None:
    """Download a catalog model into the Hugging Face cache (once).

    NAME is a model from `edge-embed models`; without it, the model EDGE_EMBED_MODEL
    names, else the default for this machine (qwen3-embedding-4b when it fits whole on
    your GPU, else qwen3-embedding-0.6b; it says which and why). An interrupted download resumes where it
    stopped when you run the same command again. The file is checked to be a complete
    GGUF, then its path is printed on stdout.

    \b
    Hugging Face settings are honoured:
      HF_HOME          where the cache lives (default ~/.cache/huggingface)
      HF_ENDPOINT      a mirror instead of https://huggingface.co
      HF_TOKEN         a token, for private or gated repos
      HF_HUB_OFFLINE   1 = never touch the network

    \b
    Examples:
      edge-embed pull
      edge-embed pull qwen3-embedding-0.6b
      HF_HOME=/data/hf edge-embed pull qwen3-embedding-8b
    """
    entry = get_entry(name or _name_to_pull())
    if cached_model_path(entry) is not None:
        click.echo(f"{entry.name} is already downloaded.", err=True)
    else:
        click.echo(f"Downloading {entry.name} ({entry.quant}, {entry.approx_size}) from {entry.repo} ...", err=True)
    path = pull_model(entry, progress=sys.stderr.isatty())
    click.echo(str(path))


def _name_to_pull() -> str:
    """EDGE_EMBED_MODEL when it names a catalog model (a typo fails in get_entry), else the
    default for this machine, saying which and why."""
    env_model = current().model or ""
    if env_model and (find_entry(env_model) or not looks_like_model_path(env_model)):
        return env_model
    choice = machine_default()
    click.echo(cli_text(choice.reason), err=True)
    return choice.name


@dataclass(frozen=True)
class _ModelState:
    """A catalog model and where it stands on this machine."""

    entry: CatalogEntry
    path: Path | None
    is_default: bool
    selected_by_env: bool

    @classmethod
    def of(cls, entry: CatalogEntry, env_model: str | None, default: str) -> _ModelState:
        return cls(
            entry=entry,
            path=cached_model_path(entry),
            is_default=entry.name == default,
            selected_by_env=env_model is not None and find_entry(env_model) == entry,
        )

    def as_json(self) -> dict:
        e = self.entry
        return {
            "name": e.name,
            "description": e.description,
            "repo": e.repo,
            "file": e.file,
            "quant": e.quant,
            "approx_size_bytes": e.approx_size_bytes,
            "kind": e.kind,
            "dims": e.dims,
            "min_dims": e.min_dims,
            "context": e.context,
            "default": self.is_default,
            "selected_by_env": self.selected_by_env,
            "downloaded": self.path is not None,
            "path": str(self.path) if self.path is not None else None,
        }


def _models_table(states: list[_ModelState]) -> str:
    """A header, then per model a line of columns, its description, and its path or the pull command."""
    width = max(len(s.entry.name) for s in states)
    lines = [f"   {'NAME':<{width}}  {'QUANT':<6}  {'SIZE':<8}  {'DIMS':>4}  DOWNLOADED"]
    for s in states:
        e = s.entry
        mark = (DEFAULT_MARK if s.is_default else " ") + (ENV_MARK if s.selected_by_env else " ")
        downloaded = "yes" if s.path is not None else "no"
        dims = "-" if e.kind == "reranker" else e.dims  # a reranker makes scores, not vectors
        lines.append(f"{mark} {e.name:<{width}}  {e.quant:<6}  {e.approx_size:<8}  {dims:>4}  {downloaded}")
        lines.append(f"     {e.description}")
        lines.append(f"     file: {s.path}" if s.path is not None else f"     get it: edge-embed pull {e.name}")
    return "\n".join(lines)


def _models_footer(env_model: str | None, choice: ModelChoice) -> str:
    lines = [
        f"\n{DEFAULT_MARK} default   {ENV_MARK} selected by {MODEL_ENV} (used when --model is omitted)",
        f"{DEFAULT_MARK} here: {cli_text(choice.reason)}",
    ]
    if env_model is not None and find_entry(env_model) is None:
        what = "a local .gguf file" if looks_like_model_path(env_model) else "neither a catalog name nor a file"
        lines.append(f"{MODEL_ENV}={env_model} is {what}")
    lines.append(f"Sizes are approximate. Cache: {HubSettings.from_env().cache_dir}")
    return "\n".join(lines)
