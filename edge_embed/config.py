"""Every setting edge-embed takes from the environment, resolved in one place: ``Config``.

A face (the CLI, `serve`, `mcp`) resolves one ``Config`` per command (``Config.from_env``:
a flag given beats a variable, which beats the default) and installs it for the command's
run (``using``); the library asks ``current()`` and never reads ``os.environ`` itself, so
the settings of one run are read once and a library user can hand them in without
touching the process environment. With none installed (another thread, a library user
who installs none), ``current()`` resolves the environment as it is at that moment: a
variable set later (by a test) is heard, as before.

One process-level side effect lives here too (``prefer_passive_openmp``): llama.cpp's
OpenMP threads read their wait policy from the environment when the library loads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

APP_NAME = "edge-embed"
TRUTHY = frozenset({"1", "true", "yes", "on"})
HUB_VARIABLES = (  # what download.HubSettings reads: huggingface_hub reads them only at its import
    "HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
)


def platform_data_dir(environ: Mapping[str, str]) -> Path:
    """XDG_DATA_HOME on Linux, Application Support on macOS, LOCALAPPDATA on Windows."""
    if sys.platform == "win32":
        base = environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = str(Path.home() / "Library" / "Application Support")
    else:
        base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / APP_NAME


def platform_cache_dir(environ: Mapping[str, str]) -> Path:
    """XDG_CACHE_HOME on Linux, Caches on macOS, LOCALAPPDATA on Windows; EDGE_EMBED_CACHE wins."""
    configured = environ.get("EDGE_EMBED_CACHE")
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        return platform_data_dir(environ) / "cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / APP_NAME
    return Path(environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / APP_NAME


def platform_runtime_dir(environ: Mapping[str, str]) -> Path | None:
    """XDG_RUNTIME_DIR (per user, cleared at logout) on Linux; None elsewhere."""
    configured = environ.get("XDG_RUNTIME_DIR")
    return Path(configured) / APP_NAME if configured and sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class Config:
    """The settings of one run. Paths are resolved; None means "not set"."""

    model: str | None = None  # EDGE_EMBED_MODEL: a catalog name or GGUF path for a command given no --model
    db: Path | None = None  # EDGE_EMBED_DB: the index file when none is named
    data_dir: Path = field(default_factory=lambda: platform_data_dir({}))  # where the default index lives
    cache_dir: Path = field(default_factory=lambda: platform_cache_dir({}))  # EDGE_EMBED_CACHE: headers, rates, AMX probes
    runtime_dir: Path | None = None  # where servers leave discovery files (None: a "run" folder in cache_dir)
    force_cpu: bool = False  # EDGE_EMBED_CPU=1: never plan for a GPU
    fake_gpu: str | None = None  # EDGE_EMBED_FAKE_GPU="name:total_mib:free_mib": a simulated card (tests, doctor)
    cuda_visible_devices: str | None = None  # CUDA_VISIBLE_DEVICES, for the cards nvidia-smi lists
    url_key: str | None = None  # EDGE_EMBED_URL_KEY: the bearer token sent to an --embed-url server
    api_key: str | None = None  # EDGE_EMBED_API_KEY: `serve`'s key, which `query`/`embed` send to it
    hub: Mapping[str, str] = field(default_factory=dict)  # the Hugging Face variables (HUB_VARIABLES) that are set

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **flags: object) -> Config:
        """The environment's settings (``environ`` None: the process's), then the ``flags``
        a face was given (None: not given) on top."""
        env = os.environ if environ is None else environ
        resolved = cls(
            model=env.get("EDGE_EMBED_MODEL", "").strip() or None,
            db=Path(env["EDGE_EMBED_DB"]).expanduser() if env.get("EDGE_EMBED_DB") else None,
            data_dir=platform_data_dir(env),
            cache_dir=platform_cache_dir(env),
            runtime_dir=platform_runtime_dir(env),
            force_cpu=env.get("EDGE_EMBED_CPU", "").strip().lower() in TRUTHY,
            fake_gpu=env.get("EDGE_EMBED_FAKE_GPU") or None,
            cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
            url_key=env.get("EDGE_EMBED_URL_KEY") or None,
            api_key=env.get("EDGE_EMBED_API_KEY") or None,
            hub={name: env[name] for name in HUB_VARIABLES if name in env},
        )
        unknown = set(flags) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"Config has no setting {', '.join(sorted(unknown))}")
        return replace(resolved, **{name: value for name, value in flags.items() if value is not None})

    @property
    def default_db(self) -> Path:
        """The index file when none is named: EDGE_EMBED_DB, else index.db in the data directory."""
        return self.db or self.data_dir / "index.db"

    @property
    def server_dir(self) -> Path:
        """Where running servers leave their discovery files."""
        return self.runtime_dir or self.cache_dir / "run"


# A context variable, not a global: two commands run on two threads (a test's CliRunner
# beside a watcher's) each see their own, and ending one cannot leave its settings behind.
_installed: ContextVar[Config | None] = ContextVar("edge_embed_config", default=None)


def current() -> Config:
    """The installed run's settings, else the environment's as it is now."""
    installed = _installed.get()
    return installed if installed is not None else Config.from_env()


@contextmanager
def using(config: Config) -> Iterator[Config]:
    """``config`` for what the block runs on this thread (and the asyncio tasks it starts);
    threads it starts resolve the same environment themselves."""
    token = _installed.set(config)
    try:
        yield config
    finally:
        _installed.reset(token)


def prefer_passive_openmp(environ: MutableMapping[str, str] = os.environ) -> None:
    """OMP_WAIT_POLICY=PASSIVE unless the user chose a policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT).

    llama.cpp's CPU threads are OpenMP threads, whose default is to spin while they wait
    for each other; on a desktop where other programs want the cores, a spinning thread
    that lost its core holds up all the others (scripts/bench_threads.py: one thread per
    core fell to a third of one thread's speed). OpenMP reads the policy once, when
    llama.cpp's library loads, and any path may load it first (a CLI command, the server,
    a library user's ``TextEmbedder``), so ``edge_embed.runtime`` calls this at its import,
    before any of its modules can load llama.cpp. It writes the process environment (a
    child process inherits it), which is why it lives here, with the other variables.
    """
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["OMP_WAIT_POLICY"] = "PASSIVE"
