"""``edge-embed doctor``: what this machine has, and how the model will run on it.

The first thing to run when something is slow or fails to load: it shows the llama.cpp
build (can it use a GPU at all?), the GPUs and their free VRAM, the selected model, the
offload plan with its memory estimate and the reasons behind it, the downloaded models,
and whether the sqlite-vec extension loads. Every probe reports its failure as text:
doctor exists to diagnose broken setups, so it must not crash on one.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import click

from edge_embed.catalog import CPU_DEFAULT_MODEL, CatalogEntry, format_gb, get_entry, load_catalog
from edge_embed.cli.options import runtime_options, settings_from_options
from edge_embed.cli.wording import CLI_WORDS, cli_message, cli_text
from edge_embed.config import current
from edge_embed.download import cached_model_path, default_model_choice, resolve_model
from edge_embed.errors import EdgeEmbedError, ModelNotFound, Phrase
from edge_embed.modelfile import read_model_info
from edge_embed.runtime.hardware import GpuSurvey, build_description, llama_devices, survey_gpus
from edge_embed.runtime.choice import ModelChoice
from edge_embed.runtime.engine import check_embedding_model
from edge_embed.runtime.plan import CUDA_REBUILD, ModelShape, RuntimeSettings, catalog_shape, gib, make_plan

LABEL_WIDTH = 12


@click.command()
@runtime_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts and bug reports).")
def doctor(model: str | None, as_json: bool, **runtime: Any) -> None:
    """Show the hardware, the llama.cpp build and how the model will run here.

    \b
    Examples:
      edge-embed doctor                              # the default model
      edge-embed doctor --model qwen3-embedding-8b   # would the 8B fit my GPU?
      edge-embed doctor --ctx 2048 --json
    """
    report = gather_report(model, settings_from_options(**runtime))
    click.echo(json.dumps(report, indent=2) if as_json else render_report(report))


def gather_report(spec: str | None, settings: RuntimeSettings) -> dict[str, Any]:
    """Probe everything doctor shows; a JSON-ready dict."""
    survey, gpu_error = surveyed_gpus()
    model, shape = model_report(spec, settings)
    plan = make_plan(shape, settings, *survey.planned()) if shape is not None else None
    return {
        "llama_cpp": {"build": build_description(), "gpu_offload": survey.offload_supported, "cpu": amx_line()},
        "devices": [asdict(device) for device in llama_devices()],
        "gpus": [asdict(gpu) for gpu in survey.driven],
        "undriven_gpus": [asdict(gpu) for gpu in survey.undriven],
        "gpu_error": gpu_error,
        "model": model,
        "plan": plan.to_dict(CLI_WORDS) if plan is not None else None,
        "rerank": rerank_report(settings),
        "cached_models": cached_models(),
        "sqlite_vec": sqlite_vec_status(),
    }


def surveyed_gpus() -> tuple[GpuSurvey, str | None]:
    """The GPUs, or none and why (a malformed EDGE_EMBED_FAKE_GPU)."""
    try:
        return survey_gpus(), None
    except EdgeEmbedError as exc:
        return GpuSurvey([], [], False), cli_message(exc)


def amx_line() -> str:
    """Whether llama.cpp's AMX kernels run here (a probe in a child process, once a machine)."""
    from edge_embed.runtime.amx import amx_verdict

    try:
        return amx_verdict().describe()
    except Exception as exc:  # no usable llama.cpp: the build line says so already
        return f"AMX check not possible ({exc.__class__.__name__})"


def model_report(spec: str | None, settings: RuntimeSettings) -> tuple[dict[str, Any], ModelShape | None]:
    """The selected model and the shape to plan with: the file's header when the file is
    present, else the catalog's estimate (the plan of a model not downloaded yet).
    A file that no command would run (not found, not a GGUF, a chat model) has no plan.
    With no --model and no EDGE_EMBED_MODEL: the default for this machine, and why."""
    choice = None
    if not spec:
        try:
            choice = default_model_choice(settings)
        except EdgeEmbedError as exc:  # a malformed EDGE_EMBED_FAKE_GPU: diagnosed below, not a crash
            choice = ModelChoice(CPU_DEFAULT_MODEL, Phrase("default model {name}: no GPU plan ({why})", name=CPU_DEFAULT_MODEL, why=cli_message(exc)))
        spec = choice.name if choice is not None else None
    report, shape = selected_model_report(spec)
    if choice is not None:
        report["choice"] = cli_text(choice.reason)
    return report, shape


def selected_model_report(spec: str | None) -> tuple[dict[str, Any], ModelShape | None]:
    name = spec or current().model or ""
    try:
        resolved = resolve_model(spec)
        info = read_model_info(resolved.path)
        check_embedding_model(info)
    except ModelNotFound:  # only catalog names are "not downloaded"
        entry = get_entry(name)
        return not_downloaded_report(entry), catalog_shape(entry)
    except EdgeEmbedError as exc:
        return {"name": name, "error": cli_message(exc)}, None
    return {
        "name": resolved.label,
        "downloaded": True,
        "path": str(resolved.path),
        "size_bytes": info.file_size,
        "architecture": info.architecture,
        "layers": info.n_layer,
        "dims": info.n_embd,
        "pooling": info.pooling,
        "planned_from": "file header",
    }, ModelShape.from_model_info(info)


def not_downloaded_report(entry: CatalogEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "downloaded": False,
        "path": None,
        "size_bytes": entry.approx_size_bytes,
        "layers": entry.layers,
        "dims": entry.dims,
        "pull_command": f"edge-embed pull {entry.name}",
        "planned_from": "catalog estimate",
    }


def rerank_report(settings: RuntimeSettings) -> dict[str, Any]:
    """Whether `query` reranks by default here, and why (the reranker planned like the model)."""
    from edge_embed.rerank import decide_rerank

    try:
        decision = decide_rerank(None, settings)
    except EdgeEmbedError as exc:  # a broken reranker file: diagnosed, not a crash
        return {"default": False, "reason": f"off: {cli_message(exc)}"}
    return {"default": decision.on, "reason": cli_text(decision.reason)}


def cached_models() -> list[dict[str, Any]]:
    """Catalog models already in the Hugging Face cache (no network)."""
    found = []
    for entry in load_catalog():
        path = cached_model_path(entry)
        if path is not None:
            found.append({"name": entry.name, "path": str(path), "size_bytes": path.stat().st_size})
    return found


def sqlite_vec_status() -> dict[str, Any]:
    """Whether the sqlite-vec extension loads into apsw's SQLite, and its version."""
    try:
        import apsw
        import sqlite_vec

        connection = apsw.Connection(":memory:")
        try:
            connection.enable_load_extension(True)
            sqlite_vec.load(connection)
            version = connection.execute("select vec_version()").fetchone()[0]
        finally:
            connection.close()
    except Exception as exc:  # any failure is the diagnosis, not a crash
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}
    return {"ok": True, "version": str(version)}


def render_report(report: dict[str, Any]) -> str:
    """The report for people: one labelled section per probe."""
    llama = report["llama_cpp"]
    sections = [
        ("llama.cpp", [f"{llama['build']}; GPU offload: {'yes' if llama['gpu_offload'] else 'no'}", llama["cpu"]]),
        ("devices", device_lines(report["devices"])),
        ("GPUs", gpu_lines(report["gpus"], report["undriven_gpus"], report["gpu_error"])),
        ("model", model_lines(report["model"])),
        ("plan", plan_lines(report["plan"])),
        ("rerank", [report["rerank"]["reason"]]),
        ("downloaded", cached_lines(report["cached_models"])),
        ("sqlite-vec", [sqlite_vec_line(report["sqlite_vec"])]),
    ]
    lines = []
    for label, body in sections:
        for i, line in enumerate(body):
            lines.append(f"{label if i == 0 else '':<{LABEL_WIDTH}}{line}")
    return "\n".join(lines)


def device_lines(devices: list[dict[str, Any]]) -> list[str]:
    """Every device llama.cpp reports, as it reports it (a CPU-only build: the CPU alone)."""
    lines = []
    for device in devices:
        memory = f": {gib(device['free_bytes'])} free of {gib(device['total_bytes'])}" if device["total_bytes"] else ""
        lines.append(f"{device['backend']} {device['kind']} {device['name']} ({device['description']}){memory}")
    return lines or ["llama.cpp reports no device (is llama-cpp-python installed?)"]


def gpu_lines(gpus: list[dict[str, Any]], undriven: list[dict[str, Any]], error: str | None) -> list[str]:
    lines = [
        f"#{gpu['index']} {gpu['name']} ({gpu['backend']}{', unified memory' if gpu['unified_memory'] else ''}): "
        f"{gib(gpu['free_bytes'])} free of {gib(gpu['total_bytes'])}"
        for gpu in gpus
    ]
    lines += [
        f"{gpu['name']} is present, but this llama.cpp build cannot use it: rebuild with CUDA: {CUDA_REBUILD}"
        for gpu in undriven
    ]
    if error:
        lines.append(error)
    return lines or ["none that this llama.cpp build can drive"]


def model_lines(model: dict[str, Any]) -> list[str]:
    if "error" in model:
        return [f"{model['name']}: {model['error']}"]
    choice = [model["choice"]] if "choice" in model else []
    return choice + selected_model_lines(model)


def selected_model_lines(model: dict[str, Any]) -> list[str]:
    size = format_gb(model["size_bytes"])
    if not model["downloaded"]:
        return [
            f"{model['name']}: not downloaded yet (~{size}); `{model['pull_command']}` fetches it",
            f"the plan below is estimated from the catalog ({model['layers']} layers, {model['dims']} dims)",
        ]
    return [
        f"{model['name']}: {model['path']}",
        f"{size}, {model['architecture']}, {model['layers']} layers, {model['dims']} dims, "
        f"pooling {model['pooling'] or 'unspecified'}",
    ]


def plan_lines(plan: dict[str, Any] | None) -> list[str]:
    if plan is None:
        return ["none (no usable model)"]
    where = f"{plan['device']} ({plan['gpu']['name']})" if plan["device"] != "cpu" else "cpu"
    head = " + output head" if plan["output_on_gpu"] else ""
    lines = [
        f"device {where}, layers on GPU {plan['gpu_blocks']}/{plan['n_layer']}{head}",
        f"ctx {plan['n_ctx']}, batch {plan['n_batch']}, ubatch {plan['n_ubatch']}, "
        f"flash attention {'on' if plan['flash_attn'] else 'off'}, threads {plan['n_threads']}",
    ]
    if plan["device"] != "cpu":
        lines.append(
            f"expected VRAM {gib(plan['expected_vram'])}: weights {gib(plan['weights_vram'])}, "
            f"KV cache {gib(plan['kv_vram'])}, compute {gib(plan['compute_vram'])}, "
            f"runtime {gib(plan['cuda_overhead'])}; headroom kept {gib(plan['headroom'])}"
        )
    return lines + [f"- {note}" for note in plan["notes"]]


def cached_lines(models: list[dict[str, Any]]) -> list[str]:
    if not models:
        return ["no catalog model yet (`edge-embed pull` fetches the default above)"]
    return [f"{m['name']}: {m['path']} ({format_gb(m['size_bytes'])})" for m in models]


def sqlite_vec_line(status: dict[str, Any]) -> str:
    if status["ok"]:
        return f"{status['version']} loads"
    return f"does not load: {status['error']}"
