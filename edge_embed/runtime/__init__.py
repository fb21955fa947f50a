"""Running the embedding model: hardware detection, the offload plan, the llama.cpp engine.

Submodules are imported where needed (``engine`` loads llama.cpp, which is slow), so
importing this package costs nothing but one setting: llama.cpp's OpenMP threads wait
passively unless the user chose a policy (``config.prefer_passive_openmp``: measured in
scripts/bench_threads.py and docs/benchmarks.md). It is made here, at the package's import,
because OpenMP reads it once, when llama.cpp loads, and every path to llama.cpp (a CLI
command, the server, a library user's ``TextEmbedder``) passes through this package first;
no face could set it in time for a library user, who has none.
"""

from edge_embed.config import prefer_passive_openmp

prefer_passive_openmp()
