"""The options every command that runs the model shares: which model, and how to run it.

``embed``, ``index``, ``query`` and ``doctor`` take the same ``--model``, ``--gpu-layers``,
``--ctx``, ``--batch``, ``--threads`` and ``--cpu``, so a user who tuned one command (or
read ``doctor``'s plan) can pass the same flags to the others.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from edge_embed.catalog import DEFAULT_MODEL

if TYPE_CHECKING:  # the planner loads when settings are made: `query` via a server never needs it
    from edge_embed.runtime.plan import RuntimeSettings

F = TypeVar("F", bound=Callable)

RUNTIME_OPTIONS = (
    click.option(
        "--model",
        "-m",
        envvar="EDGE_EMBED_MODEL",
        show_envvar=True,
        default=None,
        metavar="NAME|PATH",
        help=f"A catalog model (see `edge-embed models`; default {DEFAULT_MODEL}) or the path "
        "of any GGUF embedding model.",
    ),
    click.option(
        "--gpu-layers",
        type=click.IntRange(min=0),
        default=None,
        metavar="N",
        help="Transformer layers to put on the GPU (0 = CPU only; the layer count or more = all). "
        "Default: as many as fit in the free VRAM (see `edge-embed doctor`).",
    ),
    click.option(
        "--ctx",
        type=click.IntRange(min=16),
        default=None,
        metavar="TOKENS",
        help="Most tokens of one input; longer inputs are truncated. Default: 8192 (or the "
        "model's limit), lowered automatically when that keeps the whole model on the GPU.",
    ),
    click.option(
        "--batch",
        type=click.IntRange(min=1),
        default=None,
        metavar="TOKENS",
        help="Tokens per llama.cpp call (sets n_batch and n_ubatch). Default: 2048/512 on a "
        "GPU, 512/256 on the CPU. Smaller uses less memory.",
    ),
    click.option(
        "--threads",
        type=click.IntRange(1, os.cpu_count() or 1),
        default=None,
        metavar="N",
        help=f"CPU threads for llama.cpp, 1 to the {os.cpu_count() or 1} logical CPUs of this machine "
        "(more only slows it down, or crashes thread creation). Default: every core this process may use.",
    ),
    click.option(
        "--cpu",
        "force_cpu",
        is_flag=True,
        help="Run on the CPU even when a GPU is available (same as EDGE_EMBED_CPU=1).",
    ),
)


class FiniteFloat(click.ParamType):
    """A float that is a real number: ``nan`` would silently match nothing, ``inf`` everything or nothing."""

    name = "float"

    def convert(self, value, param, ctx) -> float:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE_FLOAT = FiniteFloat()


def runtime_options(command: F) -> F:
    """Add the model and runtime options; the command receives ``model``, ``gpu_layers``,
    ``ctx``, ``batch``, ``threads`` and ``force_cpu``."""
    for option in reversed(RUNTIME_OPTIONS):
        command = option(command)
    return command


def settings_from_options(
    *,
    gpu_layers: int | None = None,
    ctx: int | None = None,
    batch: int | None = None,
    threads: int | None = None,
    force_cpu: bool = False,
) -> RuntimeSettings:
    """The planner's settings from the parsed options (EDGE_EMBED_CPU=1 also forces the CPU)."""
    from edge_embed.runtime.plan import RuntimeSettings

    return RuntimeSettings.from_env(gpu_layers=gpu_layers, ctx=ctx, batch=batch, threads=threads, force_cpu=force_cpu)


def embed_url_option(command: F) -> F:
    """``--embed-url URL`` (env EDGE_EMBED_URL): vectors from an OpenAI-compatible server."""
    return click.option(
        "--embed-url",
        envvar="EDGE_EMBED_URL",
        show_envvar=True,
        default=None,
        metavar="URL",
        help="Take embeddings from this OpenAI-compatible server (vLLM, TEI, llama-server, "
        "another `edge-embed serve`), e.g. http://gpu-box:8377/v1, instead of the local model.",
    )(command)
