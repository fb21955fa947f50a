"""Running the embedding model: hardware detection, the offload plan, the llama.cpp engine.

Submodules are imported where needed (``engine`` loads llama.cpp, which is slow), so
importing this package costs nothing.
"""
