#!/usr/bin/env python3
"""The GPU check: what edge-embed plans on this machine's GPU, and what it then does.

Run by scripts/gpu_check.sh after it has built llama-cpp-python with CUDA; it also runs
on a CPU-only machine (then every plan is a CPU plan), which is how it is tested. It
prints, and writes as JSON to --out:

* ``doctor --json``: the llama.cpp build, the devices llama.cpp reports, the plan;
* the numpy-reference check: the tiny test model through the engine on the planned
  device, cosine to ``edge_embed.testing``'s reference (goal >= 0.999);
* per shape-true random model (0.6B Q8_0, 4B Q4_K_M, written once into --models): the
  plan (layers on the GPU, expected VRAM), embedding tokens/s on mixed texts, and the
  memory nvidia-smi shows in use by this process while it is loaded, against the plan.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge_embed.modelfile import read_model_info
from edge_embed.runtime.engine import Embedder
from edge_embed.runtime.plan import ModelShape, RuntimeSettings, plan_for
from edge_embed.testing import write_shape_true_qwen3, write_tiny_qwen3

MIB = 1 << 20
WORDS = "the of and to in is for on that with as by this from are be or an it at which can".split()


def doctor_report() -> dict:
    done = subprocess.run([sys.executable, "-m", "edge_embed", "doctor", "--json"], capture_output=True, text=True, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-2000:]}


def nvidia_smi_used_mib() -> int | None:
    """GPU memory nvidia-smi shows in use by this process (None without nvidia-smi, or when
    it lists no process of ours, as in many containers)."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    done = subprocess.run(
        [binary, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=False,
    )
    for line in done.stdout.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return int(used.strip())
    return None


def nvidia_smi_total_used_mib() -> int | None:
    """GPU memory nvidia-smi shows in use on the first GPU, by every process: the change
    across a load is this process's share where per-process figures are not shown."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    done = subprocess.run([binary, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, check=False)
    try:
        return int(done.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def reference_check(tmp: Path) -> dict:
    """The tiny model on the planned device against the numpy reference."""
    model = write_tiny_qwen3(tmp / "tiny.gguf")
    info = read_model_info(model.path)
    plan = plan_for(ModelShape.from_model_info(info), RuntimeSettings(ctx=512))
    embedder = Embedder(info, plan)
    try:
        texts = ["a tabby cat sat on the mat", "私有的离线语义搜索", "abc " * 40]
        got = embedder.embed_documents(texts)
    finally:
        embedder.close()
    cosines = []
    for text, vector in zip(texts, got):
        expected = model.embed(model.tokenize(text) + [model.eos_id])
        cosines.append(float(vector @ (expected / np.linalg.norm(expected))))
    return {"device": plan.device, "n_gpu_layers": plan.n_gpu_layers, "min_cosine": round(min(cosines), 6),
            "ok": min(cosines) >= 0.999}


def mixed_texts(embedder: Embedder, count: int) -> list[str]:
    texts = []
    for i in range(count):
        target = 50 + 450 * i // max(count - 1, 1)
        words: list[str] = []
        while embedder.count_tokens(" ".join(words)) < target:
            words.extend(WORDS[(len(words) + j) % len(WORDS)] for j in range(8))
        texts.append(" ".join(words))
    return texts


def model_check(models: Path, shape: str, quant: str, texts: int) -> dict:
    path = models / f"qwen3-embedding-{shape}-{quant}-random.gguf"
    if not path.exists():
        started = time.perf_counter()
        write_shape_true_qwen3(path, shape, quant)
        print(f"wrote {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    info = read_model_info(path)
    plan = plan_for(ModelShape.from_model_info(info), RuntimeSettings())
    used_before = nvidia_smi_total_used_mib()
    embedder = Embedder(info, plan)
    try:
        inputs = mixed_texts(embedder, texts)
        embedder.embed_documents(inputs[:2])  # warm-up
        before = embedder.stats.tokens
        started = time.perf_counter()
        embedder.embed_documents(inputs)
        seconds = time.perf_counter() - started
        used = nvidia_smi_used_mib()
        used_after = nvidia_smi_total_used_mib()
    finally:
        embedder.close()
    tokens = embedder.stats.tokens - before
    return {
        "model": f"{shape} {quant}",
        "device": plan.device,
        "gpu_layers": f"{plan.gpu_blocks}/{plan.n_layer}" + (" + head" if plan.output_on_gpu else ""),
        "n_ctx": plan.n_ctx,
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "planned_vram_mib": plan.expected_vram // MIB,
        "nvidia_smi_used_mib": used,
        "nvidia_smi_used_change_mib": None if used_before is None or used_after is None else used_after - used_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path(".bench"), help="where the shape-true models are written")
    parser.add_argument("--shapes", default="0.6b:Q8_0,4b:Q4_K_M")
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--out", type=Path, help="also write the report as JSON here")
    args = parser.parse_args()
    args.models.mkdir(parents=True, exist_ok=True)
    report = {"doctor": doctor_report()}
    print(json.dumps({k: report["doctor"].get(k) for k in ("llama_cpp", "devices", "gpus")}, indent=1), flush=True)
    report["reference"] = reference_check(args.models)
    print("reference:", report["reference"], flush=True)
    report["models"] = []
    for spec in filter(None, args.shapes.split(",")):
        shape, quant = spec.split(":")
        report["models"].append(model_check(args.models, shape, quant, args.texts))
        print(report["models"][-1], flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
