"""Running the embedding model: hardware detection, the offload plan, the llama.cpp engine.

Submodules are imported where needed (``engine`` loads llama.cpp, which is slow), so
importing this package costs nothing but one setting: llama.cpp's CPU threads are OpenMP
threads, and OpenMP's default has them spin while they wait for each other. On a desktop
where other programs want the cores too, a spinning thread that lost its core holds up
all the others: measured (scripts/bench_threads.py, docs/benchmarks.md), the default of one
thread per core fell to a third of one thread's speed, and a short request took 5-10x as
long. Waiting passively (sleeping) costs nothing measurable, so unless the user chose a
policy (``OMP_WAIT_POLICY`` or libgomp's ``GOMP_SPINCOUNT``), it is set here, before any
module of this package can load llama.cpp (OpenMP reads it once, at that moment).
"""

import os

if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
