"""Downloading catalog models, and resolving ``--model`` to a GGUF file on disk.

Models live in the standard Hugging Face cache (``$HF_HOME/hub``), so a file fetched by
any other HF tool is found, and ``hf cache`` can list and delete ours.

Why not a bare ``hf_hub_download``: huggingface_hub 2.x downloads into a process-unique
temporary file and deletes it when the transfer fails, so an interrupted multi-GB pull
(Ctrl-C, a network drop longer than its retries) starts again from zero. We keep the
partial file as ``blobs/<etag>.incomplete`` and continue it with a Range request through
huggingface_hub's own ``http_get`` (which also retries and resumes within one run), check
it is a complete GGUF, and only then let ``hf_hub_download`` link the finished blob into
its snapshot, so the cache layout (refs, symlinks) stays huggingface_hub's business.
This works with huggingface_hub 1.20+ (which sends with httpx) and 2.x (httpx2); 1.20 is
the first whose ``http_get`` resumes a connection cut mid-transfer.

Only ``pull`` downloads; ``resolve_model`` and ``cached_model_path`` never touch the network.
"""

from __future__ import annotations

import errno
import importlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get, repo_folder_name
from huggingface_hub.utils import WeakFileLock, build_hf_headers, silent_tqdm

from edge_embed.catalog import CatalogEntry, find_entry, format_gb, get_entry
from edge_embed.config import current
from edge_embed.errors import EdgeEmbedError, ModelFileError, ModelNotFound
from edge_embed.modelfile import read_model_info

if TYPE_CHECKING:
    from edge_embed.runtime.choice import ModelChoice
    from edge_embed.runtime.plan import RuntimeSettings

MODEL_ENV = "EDGE_EMBED_MODEL"
REVISION = "main"
PARTIAL_SUFFIX = ".incomplete"
_TRUTHY = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class HubSettings:
    """The Hugging Face variables (``Config.hub``), read when a download or lookup happens.

    huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when it is first
    imported; a library user (or a test) may set them later, so we take them from the run's
    ``Config`` and pass them explicitly. HF_TOKEN is read by huggingface_hub at request time already.
    """

    endpoint: str
    cache_dir: Path
    offline: bool

    @classmethod
    def from_env(cls) -> HubSettings:
        env = current().hub
        home = env.get("HF_HOME")
        cache = (
            env.get("HF_HUB_CACHE")
            or env.get("HUGGINGFACE_HUB_CACHE")
            or (os.path.join(home, "hub") if home else constants.HF_HUB_CACHE)
        )
        offline = env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or ""
        return cls(
            endpoint=(env.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/"),
            cache_dir=Path(os.path.expandvars(cache)).expanduser(),
            offline=offline.upper() in _TRUTHY,
        )


@dataclass(frozen=True)
class ResolvedModel:
    """The GGUF file a command will load, and the catalog entry it came from (None for a path)."""

    path: Path
    entry: CatalogEntry | None
    label: str


@dataclass(frozen=True)
class _RemoteFile:
    """What the hub's HEAD answer says about a file: where to GET it, its blob name and size."""

    url: str
    etag: str
    size: int | None
    headers: dict[str, str]


def cached_model_path(entry: CatalogEntry) -> Path | None:
    """Where the HF cache already holds ``entry``'s file, or None (no network, no verification)."""
    return _cached_path(entry, HubSettings.from_env())


def pull(entry: CatalogEntry, *, progress: bool) -> Path:
    """Make sure ``entry``'s file is in the HF cache and is a complete GGUF; return its path.

    A file already cached is verified and returned without any request. Otherwise the
    download continues a partial file left by an earlier attempt. Every failure a user can
    fix (network, token, gated repo, offline mode, disk full, a broken file) is an
    EdgeEmbedError with a one-line fix.
    """
    hub = HubSettings.from_env()
    cached = _cached_path(entry, hub)
    if cached is not None:
        read_model_info(cached)
        return cached
    if hub.offline:
        raise EdgeEmbedError(_offline_message(entry))
    with _hub_errors_explained(entry, hub):
        remote = _remote_file(entry, hub)
        _download_blob(entry, hub, remote, progress=progress)
        path = Path(
            hf_hub_download(
                entry.repo,
                entry.file,
                revision=REVISION,
                cache_dir=hub.cache_dir,
                endpoint=hub.endpoint,
                tqdm_class=None if progress else silent_tqdm,
            )
        )
    read_model_info(path)
    return path


def resolve_model(spec: str | None = None, runtime: RuntimeSettings | None = None) -> ResolvedModel:
    """Turn ``--model`` (catalog name or .gguf path) into a verified local file; never downloads.

    With no spec, EDGE_EMBED_MODEL decides, else the default for this machine
    (``runtime/choice.py``). A catalog model that is not downloaded raises ModelNotFound
    naming the `edge-embed pull` command; a path that is missing, not a GGUF or truncated
    raises ModelFileError.
    """
    spec = (spec or current().model or machine_default(runtime).name).strip()
    entry = find_entry(spec)
    if entry is None and looks_like_model_path(spec):
        info = read_model_info(spec)
        return ResolvedModel(path=info.path, entry=None, label=info.path.name)
    entry = entry or get_entry(spec)
    path = cached_model_path(entry)
    if path is None:
        raise ModelNotFound(
            f"model {entry.name} is not downloaded yet", model_name=entry.name, hint="{pull} ({size}, once)",
            size=entry.approx_size,
        )
    read_model_info(path)
    return ResolvedModel(path=path, entry=entry, label=entry.name)


def machine_default(runtime: RuntimeSettings | None = None) -> ModelChoice:
    """The catalog default that fits this machine with these settings, and why (None: the
    environment's, so EDGE_EMBED_CPU counts as --cpu does)."""
    from edge_embed.runtime.choice import choose_default_model
    from edge_embed.runtime.plan import RuntimeSettings

    return choose_default_model(runtime or RuntimeSettings.from_env())


def default_model_choice(runtime: RuntimeSettings | None = None) -> ModelChoice | None:
    """For a command given no --model: the machine's default and why, or None when
    EDGE_EMBED_MODEL names the model (it decides, as ``resolve_model`` does)."""
    if current().model:
        return None
    return machine_default(runtime)


def looks_like_model_path(spec: str) -> bool:
    """Catalog names have no slashes and no .gguf suffix; anything else that could be a file is one."""
    return (
        spec.lower().endswith(".gguf")
        or "/" in spec
        or os.sep in spec
        or spec.startswith(("~", "."))
        or Path(spec).exists()
    )


def _cached_path(entry: CatalogEntry, hub: HubSettings) -> Path | None:
    found = try_to_load_from_cache(entry.repo, entry.file, cache_dir=hub.cache_dir, revision=REVISION)
    return Path(found) if isinstance(found, str) else None


def _remote_file(entry: CatalogEntry, hub: HubSettings) -> _RemoteFile:
    """Ask the hub (HEAD) for the file's ETag, size and download location."""
    url = hf_hub_url(entry.repo, entry.file, revision=REVISION, endpoint=hub.endpoint)
    meta = get_hf_file_metadata(url, endpoint=hub.endpoint)
    if meta.etag is None or meta.commit_hash is None:
        raise EdgeEmbedError(
            f"{hub.endpoint} did not answer like a Hugging Face hub (no ETag or X-Repo-Commit header):"
            " check HF_ENDPOINT and your proxy settings"
        )
    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"  # byte ranges must count bytes of the file itself
    if urlsplit(meta.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a signed CDN URL: the token stays with the hub
    return _RemoteFile(url=meta.location, etag=meta.etag, size=meta.size, headers=headers)


def _download_blob(entry: CatalogEntry, hub: HubSettings, remote: _RemoteFile, *, progress: bool) -> None:
    """Fill ``blobs/<etag>``, continuing ``blobs/<etag>.incomplete`` if an earlier pull left one.

    The lock is huggingface_hub's own lock for this blob, so a concurrent pull (ours or any
    HF tool) never appends to the same partial file.
    """
    repo_folder = repo_folder_name(repo_id=entry.repo, repo_type="model")
    blob = hub.cache_dir / repo_folder / "blobs" / remote.etag
    partial = blob.with_name(blob.name + PARTIAL_SUFFIX)
    lock = hub.cache_dir / ".locks" / repo_folder / f"{remote.etag}.lock"
    blob.parent.mkdir(parents=True, exist_ok=True)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with WeakFileLock(lock):
        if blob.exists():
            return
        done = _usable_partial_size(partial, remote.size)
        if remote.size is not None:
            _check_disk_space(entry, blob.parent, remote.size - done)
        with partial.open("ab") as fh:
            http_get(
                remote.url,
                fh,
                resume_size=done,
                headers=remote.headers,
                expected_size=remote.size,
                displayed_filename=entry.file,
                tqdm_class=None if progress else silent_tqdm,
            )
        _verify_download(entry, partial)
        partial.replace(blob)


def _usable_partial_size(partial: Path, expected_size: int | None) -> int:
    """Bytes of an earlier attempt to continue from; a partial longer than the file is discarded."""
    if not partial.exists():
        return 0
    size = partial.stat().st_size
    if expected_size is not None and size > expected_size:
        partial.unlink()
        return 0
    return size


def _check_disk_space(entry: CatalogEntry, directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise EdgeEmbedError(_disk_full_message(entry, directory, needed, free))


def _disk_full_message(entry: CatalogEntry, directory: Path, needed: int | None, free: int) -> str:
    need = f"needs {format_gb(needed)} more" if needed is not None else "ran out of space"
    return (
        f"not enough disk space for {entry.name}: it {need} in {directory}, {format_gb(free)} free;"
        " free some space (the download resumes) or set HF_HOME to a folder on a bigger disk"
    )


def _verify_download(entry: CatalogEntry, partial: Path) -> None:
    """A complete transfer can still be the wrong bytes (a proxy's error page, a truncated mirror copy)."""
    try:
        read_model_info(partial)
    except ModelFileError:
        size = partial.stat().st_size
        partial.unlink()
        raise ModelFileError(
            f"the downloaded {entry.file} ({size} bytes) is not a complete GGUF model, so it was deleted",
            kind="unavailable", hint="{pull} again, and if it fails again check HF_ENDPOINT "
            "(a proxy or mirror may be serving a wrong file)", model_name=entry.name,
        ) from None


@contextmanager
def _hub_errors_explained(entry: CatalogEntry, hub: HubSettings) -> Iterator[None]:
    """Turn huggingface_hub/httpx failures into one-line EdgeEmbedErrors that say what to do."""
    try:
        yield
    except EdgeEmbedError:
        raise
    except Exception as exc:
        message = _explain_failure(exc, entry, hub)
        if message is None:
            raise
        raise EdgeEmbedError(message, kind="unavailable") from exc


def _explain_failure(exc: Exception, entry: CatalogEntry, hub: HubSettings) -> str | None:
    """The one-line message for a download failure, or None for a failure that is a bug."""
    where = f"{entry.repo} on {hub.endpoint}"
    again = "download it again"
    if isinstance(exc, OfflineModeIsEnabled):
        return _offline_message(entry)
    if isinstance(exc, GatedRepoError):
        return f"{where} is gated: accept its terms on the model page, then set HF_TOKEN to a token of that account"
    if isinstance(exc, RepositoryNotFoundError):
        return f"{where} was not found or needs a login: check HF_ENDPOINT, and set HF_TOKEN if the repo is private"
    if isinstance(exc, (RemoteEntryNotFoundError, RevisionNotFoundError)):
        return (
            f"{entry.file} is not in {where} (the repo changed?): pick another model from the catalog"
            " or use a local .gguf file as the model"
        )
    if isinstance(exc, HfHubHTTPError):
        return _explain_http_status(exc.response.status_code, where, again)
    if isinstance(exc, _transport_errors()):
        return (
            f"cannot reach {hub.endpoint} ({exc.__class__.__name__}): check your connection, proxy and HF_ENDPOINT,"
            f" then {again} (it resumes)"
        )
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return _disk_full_message(entry, hub.cache_dir, None, shutil.disk_usage(hub.cache_dir).free)
    if isinstance(exc, OSError):
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return f"downloading {entry.file} failed ({first_line}): {again} (it resumes)"
    return None


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection-level failures of the HTTP library huggingface_hub sends with: httpx for
    huggingface_hub 1.x, httpx2 for 2.x. Neither is ours to declare: the hub brings its own."""
    errors = []
    for library in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(library).TransportError)
        except ImportError:
            continue
    return tuple(errors)


def _offline_message(entry: CatalogEntry) -> str:
    return (
        f"{entry.name} is not downloaded and HF_HUB_OFFLINE is set: unset HF_HUB_OFFLINE to download it,"
        " or use a local .gguf file as the model"
    )


def _explain_http_status(status: int, where: str, again: str) -> str:
    if status == 401:
        return f"{where} refused the token (401): set HF_TOKEN to a valid token, or unset it for public repos"
    if status == 403:
        return f"{where} denied access (403): check that your HF_TOKEN may read this repo"
    if status == 404:
        return f"{where} answered 404: check HF_ENDPOINT (a mirror may not have this repo)"
    return f"{where} answered HTTP {status}: wait a moment, then {again} (it resumes)"
