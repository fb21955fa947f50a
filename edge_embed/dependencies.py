"""From an ImportError raised by a third-party package to what the user should install.

Another package in the same environment can pin one of ours below what edge-embed needs
(transformers pinning huggingface-hub, say), or a package can be missing altogether. Python
then fails at import with a traceback that names a module, not the package or the version
to install; ``dependency_error`` names both, from edge-embed's own declared requirements.
"""

from __future__ import annotations

import re
from importlib import metadata

from edge_embed.errors import DependencyError

DISTRIBUTION = "edge-embed"
PACKAGE = "edge_embed"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def dependency_error(exc: ImportError) -> DependencyError | None:
    """The one-line error for ``exc``, or None when the failing import is edge-embed's own
    (a bug, which keeps its traceback)."""
    module = (exc.name or "").partition(".")[0]
    if not module or module == PACKAGE:
        return None
    distribution = distribution_of(module)
    requirement = declared_requirement(distribution)
    package = _NAME.match(requirement).group()  # spelt as pyproject.toml spells it
    installed = installed_version(distribution)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    fix = f"run `pip install '{requirement}'`"
    if installed is None:
        message = f"edge-embed needs {package}, which is not installed ({reason}): {fix}"
    else:
        message = f"edge-embed cannot use the installed {package} {installed} ({reason}): {fix}"
    return DependencyError(message, package=package, installed=installed, requirement=requirement)


def distribution_of(module: str) -> str:
    """The installed distribution providing the top-level ``module`` (llama_cpp ->
    llama_cpp_python); the module's name when nothing provides it."""
    providers = metadata.packages_distributions().get(module)
    return providers[0] if providers else module


def declared_requirement(package: str) -> str:
    """edge-embed's requirement on ``package`` without its environment marker, e.g.
    "huggingface-hub<3,>=1.20"; the bare name when it is not declared (or edge-embed runs
    from a source tree that was never installed)."""
    try:
        requirements = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        requirements = []
    for requirement in requirements:
        spec = requirement.partition(";")[0].strip()
        name = _NAME.match(spec)
        if name and _canonical(name.group()) == _canonical(package):
            return spec
    return package


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _canonical(name: str) -> str:
    """PEP 503 normalisation: llama_cpp_python == llama-cpp-python == Llama.CPP.Python."""
    return re.sub(r"[-_.]+", "-", name).lower()
