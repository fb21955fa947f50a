#!/usr/bin/env bash
# The GPU check: build llama.cpp with CUDA, then see what edge-embed plans and does on the GPU.
#
#   scripts/gpu_check.sh prepare   # here, with PyPI: fills .whl/ with llama-cpp-python's
#                                  # source (trimmed to fit a 64 MiB carry) and wheels of every
#                                  # other dependency for the GPU machine's Python (3.12)
#   scripts/gpu_check.sh run       # on the GPU machine (the device tool's `run`, carry .whl):
#                                  # offline build + install, then scripts/gpu_check.py
#
# `run` is planned for under 8 minutes on a fresh 16-core CUDA machine: the CUDA build for the
# card's own architecture only, shape-true random 0.6B Q8_0 and 4B Q4_K_M models written
# there, doctor, the numpy-reference check on the tiny model, tokens/s and the plan's VRAM
# against what nvidia-smi shows; then the AMX fallback's cost on that machine's CPU
# (scripts/bench_cpu_models.py). The report goes to $OUT/gpu_check.json (else /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl
LLAMA_CPP_PYTHON=0.3.36
GPU_PYTHON=3.12

prepare() {
    local tmp src
    tmp=$(mktemp -d)
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_CPP_PYTHON" -d "$tmp"
    tar xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
    src=$(basename "$(ls -d "$tmp"/llama_cpp_python-*/)")
    # Its git history, test vocabularies, docs, benchmarks, the web UI and the backends other
    # than CUDA and the CPU are not built: 76 MB -> about 12 MB.
    rm -rf "$tmp/$src"/.git "$tmp/$src"/vendor/llama.cpp/{.git,models,docs,benches,media,tools/ui,.github}
    rm -rf "$tmp/$src"/vendor/llama.cpp/ggml/src/ggml-{et,metal,hexagon,sycl,vulkan,opencl,cann,musa,webgpu,zdnn}
    tar czf "$WHEELS/$src.tar.gz" -C "$tmp" "$src"
    python3 -c 'import tomllib; deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"];
print("\n".join(d for d in deps if not d.startswith(("llama-cpp-python", "numpy", "tomli"))))' > "$tmp/requirements.txt"
    pip download -q --only-binary=:all: --python-version "$GPU_PYTHON" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" -r "$tmp/requirements.txt" "scikit-build-core>=0.9.2" "setuptools>=68" wheel
    rm -f "$WHEELS"/numpy-*.whl  # the GPU machine's image has numpy 2.x
    rm -rf "$tmp"
    du -sh "$WHEELS"
}

run() {
    local out="${OUT:-/tmp}" started=$SECONDS
    # Into the image's own Python (itself a virtualenv, with numpy 2.x): a venv made from it
    # would see the base interpreter's packages, not that numpy. The machine is thrown away.
    export PIP_NO_INDEX=1 PIP_FIND_LINKS="$PWD/$WHEELS"
    python3 -m pip install -q scikit-build-core setuptools wheel
    nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
    grep -m1 "model name" /proc/cpuinfo || true; echo "AMX flags: $(grep -m1 ^flags /proc/cpuinfo | tr ' ' '\n' | grep amx | tr '\n' ' ')"
    # Not native CPU code: on the lent H200 machine (a Xeon advertising AMX, under gVisor) every
    # decode of a native build died, with and without AMX (docs/benchmarks.md, "GPU check");
    # this is also the rebuild `doctor` advises there.
    CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=native -DLLAMA_BUILD_TESTS=OFF" \
        CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
        python3 -m pip install -q --no-build-isolation "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_PYTHON".tar.gz
    echo "llama.cpp CUDA build: $((SECONDS - started)) s"
    python3 -m pip install -q --no-build-isolation .
    # Each step in its own process, with Python's fault handler: a crash names its place
    # and the steps after it still run.
    python3 -X faulthandler -c 'from edge_embed.runtime import hardware as h; print("extra buffer types:", h.cpu_extra_buffer_types(), "drop AMX:", h.drop_cpu_extra_buffer_type("AMX"), "->", h.cpu_extra_buffer_types())' || echo "STEP FAILED: drop"
    python3 -X faulthandler -c 'from edge_embed.testing import write_tiny_qwen3_quantized as w; w("/tmp/tiny-q8.gguf")' >/dev/null 2>&1 || echo "STEP FAILED: write the tiny model"
    CUDA_VISIBLE_DEVICES= timeout 60 python3 -X faulthandler -m edge_embed embed --model /tmp/tiny-q8.gguf hi | cut -c1-80 || echo "STEP FAILED: embed on the CPU"
    timeout 60 python3 -X faulthandler -m edge_embed embed --model /tmp/tiny-q8.gguf hi | cut -c1-80 || echo "STEP FAILED: embed on the GPU"
    timeout 90 python3 -X faulthandler scripts/gpu_check.py --models /tmp/gpu-check-models --shapes "" --out "$out/gpu_reference.json" || echo "STEP FAILED: reference"
    echo "checks: $((SECONDS - started)) s"
    # The AMX fallback on this machine's CPU (the GPU hidden): on, without AMX, off.
    (cd scripts && CUDA_VISIBLE_DEVICES= timeout 150 python3 bench_cpu_models.py --shapes 0.6b --quant Q4_K_M \
        --threads 8 --texts 8 --repeats 2) || echo "STEP FAILED: cpu bench"
    echo "cpu bench: $((SECONDS - started)) s"
    python3 -X faulthandler scripts/gpu_check.py --models /tmp/gpu-check-models --out "$out/gpu_check.json" || echo "STEP FAILED: gpu models"
    echo "gpu check: $((SECONDS - started)) s in all"
}

case "${1:-run}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
