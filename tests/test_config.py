"""Settings from the environment are resolved once, in edge_embed/config.py (issue 16).

The library below the faces reads ``config.current()``, never ``os.environ``: a face
resolves a ``Config`` (flags over variables over defaults) and installs it for its run.
"""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path

import pytest

from edge_embed.config import Config, current, prefer_passive_openmp, using
from edge_embed.paths import resolve_db
from edge_embed.runtime.plan import RuntimeSettings

PACKAGE = Path(__file__).resolve().parent.parent / "edge_embed"
MAY_READ_THE_ENVIRONMENT = ("cli/", "config.py")  # the faces that resolve a Config, and Config itself
ENVIRONMENT_READ = re.compile(r"os\.environ|os\.getenv|getenv\(|environ\[")


def test_only_the_faces_and_config_read_the_environment():
    """The done-when grep of issue 16, as a test: `grep -rn os.environ edge_embed/`."""
    readers = sorted(
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in PACKAGE.rglob("*.py")
        if not path.relative_to(PACKAGE).as_posix().startswith(MAY_READ_THE_ENVIRONMENT)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if ENVIRONMENT_READ.search(line)
    )
    assert readers == []


def test_a_flag_beats_a_variable_beats_the_default(tmp_path):
    environ = {"EDGE_EMBED_MODEL": " qwen3-embedding-0.6b ", "EDGE_EMBED_DB": str(tmp_path / "env.db"), "EDGE_EMBED_CPU": "yes"}
    defaults = Config.from_env({})
    assert defaults.model is None and defaults.db is None and not defaults.force_cpu and defaults.hub == {}
    from_env = Config.from_env(environ)
    assert from_env.model == "qwen3-embedding-0.6b" and from_env.db == tmp_path / "env.db" and from_env.force_cpu
    flagged = Config.from_env(environ, model="/models/other.gguf", db=tmp_path / "flag.db", force_cpu=None)
    assert flagged.model == "/models/other.gguf" and flagged.db == tmp_path / "flag.db"
    assert flagged.force_cpu  # None: the flag was not given
    with pytest.raises(TypeError, match="no setting colour"):
        Config.from_env({}, colour=True)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG layout")
def test_the_directories_follow_xdg_and_edge_embed_cache(tmp_path):
    xdg = Config.from_env({"XDG_DATA_HOME": "/d", "XDG_CACHE_HOME": "/c", "XDG_RUNTIME_DIR": "/r"})
    assert (xdg.data_dir, xdg.cache_dir, xdg.server_dir) == (Path("/d/edge-embed"), Path("/c/edge-embed"), Path("/r/edge-embed"))
    assert xdg.default_db == Path("/d/edge-embed/index.db")
    ours = Config.from_env({"XDG_CACHE_HOME": "/c", "EDGE_EMBED_CACHE": str(tmp_path)})
    assert ours.cache_dir == tmp_path and ours.server_dir == tmp_path / "run"


def test_the_library_hears_the_installed_config_not_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_EMBED_CPU", raising=False)
    monkeypatch.setenv("EDGE_EMBED_DB", str(tmp_path / "from-env.db"))
    installed = Config(db=tmp_path / "installed.db", force_cpu=True)
    seen_by_another_thread = []
    with using(installed):
        assert current() is installed
        assert resolve_db(None) == (tmp_path / "installed.db").resolve()
        assert RuntimeSettings.from_env().force_cpu
        thread = threading.Thread(target=lambda: seen_by_another_thread.append(current().db))
        thread.start()
        thread.join()
    assert seen_by_another_thread == [tmp_path / "from-env.db"]  # its own resolution: nothing left behind
    assert resolve_db(None) == (tmp_path / "from-env.db").resolve() and not RuntimeSettings.from_env().force_cpu


def test_openmp_waits_passively_unless_the_user_chose():
    unset: dict[str, str] = {}
    prefer_passive_openmp(unset)
    assert unset == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        environ = dict(chosen)
        prefer_passive_openmp(environ)
        assert environ == chosen
