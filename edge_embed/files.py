"""Finding the files to index under a root, and reading them as text.

This is the first stage of ``edge-embed index``. It has to survive whatever a real
home or project folder holds: ignore files at every level, symlinks (including loops
and dangling ones), FIFOs and devices, unreadable folders, binaries, odd encodings and
files that change while we look at them. None of those stop the walk: each one becomes
a ``Skip`` that the caller reports, and the walk goes on.

A walk never leaves its root: a symlink is followed only when its resolved target lies
inside the same root *and* would be indexed there on its own (not hidden, not ignored),
so neither ``notes/passwd -> /etc/passwd`` nor ``notes/config.md -> .env`` leaks anything.
Pseudo file systems (``/proc``, ``/sys``, ``/dev``) are never entered, and a folder
reached again through a link is cut at that first revisit.

``discover`` only stats; it never opens a file (opening a FIFO would block). ``read_file``
opens each file once, non-blocking, and checks that it is still the file ``discover``
saw before trusting its bytes.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import stat
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathspec import GitIgnoreSpec

from edge_embed import extract
from edge_embed.chunking import Layout
from edge_embed.documents import EXTRACTION_SKIPS
from edge_embed.errors import Phrase

DEFAULT_MAX_FILE_SIZE = 10 * 1024 * 1024
"""Larger files are skipped as "too-large": they are logs, dumps or data, not prose or code."""

DEFAULT_MAX_DOCUMENT_SIZE = 200 * 1024 * 1024
"""PDF and Word files carry images and fonts, so their limit is higher; their text is
extracted in a worker with its own time and memory limits (``documents.sandbox``)."""

IGNORE_FILE_NAMES = (".gitignore", ".edgeembedignore")
"""Read in every folder, in this order, so ``.edgeembedignore`` can override ``.gitignore``
(``!pattern`` re-includes what git ignores; other patterns ignore more). They configure
the index and are never indexed themselves, so each is reported at most once."""

VCS_NAMES = frozenset({".git", ".hg", ".svn", ".bzr"})
"""Version-control metadata, skipped always, even with ``hidden=True`` (``.git`` may be a file)."""

GENERATED_DIR_NAMES = frozenset({
    # dependencies
    "node_modules", "bower_components", ".venv", "venv", ".eggs",
    # caches
    "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox", ".nox",
    ".gradle", ".terraform",
    # build output
    "dist", "build", "target", ".next", ".nuxt",
    # editor state
    ".idea",
})
"""Folders that are always skipped, wherever they are: they hold installed dependencies,
caches, build output or editor state: large, generated, and noise in search results."""

SKIP_REASONS = frozenset({
    "binary",                 # NUL bytes or mostly control characters
    "too-large",              # over max_file_size
    "unreadable",             # permission denied or an I/O error
    "symlink-loop",           # a folder symlink back to a folder on the current path, or ELOOP
    "broken-symlink",         # the link target does not exist
    "not-a-regular-file",     # FIFO, socket or device: never opened
    "vanished",               # deleted between listing and reading
    "changed-while-reading",  # size or mtime differs from what discover saw
    "undecodable-name",       # a name that is not valid UTF-8, which the index cannot store
    "link-outside",           # a symlink whose target lies outside the indexed folder
    "link-to-excluded",       # a symlink to a hidden or ignored path inside the folder
    "pseudo-filesystem",      # /proc, /sys, /dev and their kind: never walked
}) | EXTRACTION_SKIPS  # PDF and Word files: "no-text", "encrypted", "damaged", "timed-out"

BINARY_SNIFF_BYTES = 8192
"""How much of a file's start the binary test looks at, like git and grep do."""

MAX_CONTROL_CHAR_SHARE = 0.05
"""Text has almost no control characters besides whitespace; random bytes have ~10%."""

_TEXT_CONTROL_CHARS = frozenset("\t\n\r\f\v\b\x1b")
_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


PSEUDO_FILESYSTEM_TYPES = frozenset({
    "proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs",
    "tracefs", "pstore", "bpf", "configfs", "fusectl", "mqueue", "hugetlbfs", "binfmt_misc",
    "efivarfs", "autofs", "rpc_pipefs", "nsfs", "devfs",
})
"""Kernel views, not files: endless (``/proc/self/root``), slow, or unsafe to read."""

PSEUDO_FILESYSTEM_PATHS = ("/proc", "/sys", "/dev")
"""Where systems without ``/proc/self/mounts`` (macOS) keep theirs."""


@dataclass(frozen=True, slots=True)
class FoundFile:
    """A regular file that passed the ignore rules, as ``discover`` saw it."""

    path: Path  # absolute, through any symlinks (not resolved)
    relpath: str  # POSIX, relative to the root
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Skip:
    """Something that was not indexed, and why; the caller reports it."""

    relpath: str
    reason: str  # one of SKIP_REASONS
    detail: str | Phrase  # a Phrase when it names a setting (errors.say words it)

    def __post_init__(self) -> None:
        if self.reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {self.reason!r}")


@dataclass(frozen=True, slots=True)
class FileContent:
    """A file's text, ready for chunking."""

    text: str  # newlines normalised to "\n"; HTML already turned into visible text
    content_hash: str  # sha256 hex of the raw bytes: tells the indexer what changed
    encoding: str  # the Python codec used, or the document format ("pdf", "docx")
    lossy: bool  # invalid bytes were replaced with U+FFFD
    kind: str  # extract.file_kind
    source_lines: tuple[extract.LineSpan, ...] | None = None  # see extract.Extracted
    layout: Layout | None = None  # headings and pages of a PDF or Word file


@dataclass(frozen=True, slots=True)
class DocumentFile:
    """A PDF or Word file's bytes: its text must be extracted (in a sandbox) before chunking."""

    document_format: str  # extract.document_format: "pdf" or "docx"
    data: bytes
    content_hash: str


@dataclass(frozen=True, slots=True)
class _Entry:
    """One directory entry, with its type decided once (following symlinks)."""

    name: str
    path: str
    is_dir: bool
    is_symlink: bool


@dataclass(frozen=True, slots=True)
class _IgnoreLayer:
    """The ignore patterns of one folder; they match paths relative to that folder."""

    prefix: str  # the folder's relpath + "/", or "" for the root
    spec: GitIgnoreSpec


@dataclass(slots=True)
class _Frame:
    """A folder being walked: its remaining entries and the ignore rules in force."""

    relprefix: str
    key: tuple[int, int]
    entries: Iterator[_Entry]
    layers: tuple[_IgnoreLayer, ...]


@dataclass(frozen=True, slots=True)
class _Scope:
    """The relpaths a partial walk covers (``discover(within=...)``): what changed, for a watcher."""

    targets: frozenset[str]
    folders_above: frozenset[str]  # every folder on the way from the root to a target

    @classmethod
    def of(cls, relpaths: Collection[str]) -> _Scope:
        targets = frozenset(relpaths)
        above = {target[:cut] for target in targets for cut in _slash_positions(target)}
        return cls(targets, frozenset(above))

    def reaches(self, relpath: str, is_dir: bool) -> bool:
        if relpath in self.targets or (is_dir and relpath in self.folders_above):
            return True
        return any(relpath[:cut] in self.targets for cut in _slash_positions(relpath))


def _slash_positions(relpath: str) -> Iterator[int]:
    """Where each ancestor folder's relpath ends ("a/b/c" -> 1, 3: "a", "a/b")."""
    return (i for i, char in enumerate(relpath) if char == "/")


@dataclass(frozen=True, slots=True)
class _Filters:
    """The rules that silently leave a path out, apart from ignore files."""

    hidden: bool
    include: GitIgnoreSpec | None
    exclude: GitIgnoreSpec | None
    within: _Scope | None = None

    def drops_by_name(self, entry: _Entry) -> bool:
        """VCS metadata, ignore files, generated folders and (unless asked for) hidden names."""
        if entry.is_dir and entry.name in GENERATED_DIR_NAMES:
            return True
        if entry.name in VCS_NAMES or (not entry.is_dir and entry.name in IGNORE_FILE_NAMES):
            return True
        return not self.hidden and entry.name.startswith(".")

    def excludes(self, match_path: str) -> bool:
        return self.exclude is not None and self.exclude.match_file(match_path)

    def outside_scope(self, relpath: str, is_dir: bool) -> bool:
        """Not one of the ``within`` paths, not under one, and not a folder on the way to one."""
        return self.within is not None and not self.within.reaches(relpath, is_dir)

    def leaves_out_file(self, relpath: str) -> bool:
        """``include`` narrows files only: folders are always walked to find matches inside."""
        return self.include is not None and not self.include.match_file(relpath)


def discover(
    root: Path | str,
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hidden: bool = False,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    max_document_size: int = DEFAULT_MAX_DOCUMENT_SIZE,
    follow_links: bool = False,
    within: Collection[str] | None = None,
) -> Iterator[FoundFile | Skip]:
    """Walk ``root`` and yield every file to index, or a ``Skip`` saying why not.

    Order is deterministic: relpaths come out sorted (by code point). Ignored paths
    (ignore files, ``exclude``, not matching ``include``, hidden, VCS and generated
    folders) are left out silently. Files over ``max_file_size`` (PDF and Word files: over
    ``max_document_size``) are skipped. ``include``/``exclude`` are gitignore-style patterns
    matched against the relpath; ``exclude`` also prunes folders. Ignore files are read
    from the root downwards, never from above it.

    Symlinks lead only to what the walk would take inside the root anyway; with
    ``follow_links`` a link may lead outside too (a drive, a shared folder), its target then
    checked like a root: never a pseudo file system, and each folder walked once.

    The root itself must be a readable folder: its problems raise ``OSError`` at once
    (the user named it), while problems below it become ``Skip``s. The walk is lazy and
    holds only the listings of the folders on the current path.

    ``within`` (relpaths of files or folders; None: everything) walks only those paths and
    what is under them, entering just the folders on the way: a watcher re-checks what
    changed under the very same rules (the ignore files above a path still apply).
    """
    root_path = Path(os.path.abspath(root))
    root_stat = os.stat(root_path)
    if not stat.S_ISDIR(root_stat.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(root_path))
    if root_stat.st_dev in pseudo_filesystem_devices():
        raise OSError(errno.EPERM, "a kernel file system (like /proc), not files: it is never indexed", str(root_path))
    scope = _Scope.of(within) if within is not None else None
    filters = _Filters(hidden, gitignore_spec(include), gitignore_spec(exclude), scope)
    walker = _Walker(root_path, filters, max_file_size, max_document_size, follow_links)
    walker.enter_root(_dir_key(root_stat))
    return walker.walk()


class _Walker:
    """A depth-first walk with an explicit stack, so deep trees cannot hit the recursion limit."""

    def __init__(
        self, root: Path, filters: _Filters, max_file_size: int, max_document_size: int, follow_links: bool = False
    ) -> None:
        self._root = root
        self._follow_links = follow_links
        self._filters = filters
        self._max_file_size = max_file_size
        self._max_document_size = max_document_size
        self._real_root = os.path.realpath(root)
        self._pseudo_devices = pseudo_filesystem_devices()
        self._stack: list[_Frame] = []
        self._on_path: dict[tuple[int, int], str] = {}  # folder identity -> its relpath
        self._entered: set[tuple[int, int]] = set()  # every folder walked so far
        self._layers_at: dict[str, _IgnoreLayer | None] = {}  # for link targets, by relprefix
        self._pending: list[Skip] = []

    def enter_root(self, key: tuple[int, int]) -> None:
        """List the root eagerly so that an unreadable root raises in ``discover``."""
        self._push(str(self._root), "", key, ())

    def walk(self) -> Iterator[FoundFile | Skip]:
        while self._stack:
            yield from self._pending  # problems met while entering the folder on top
            self._pending.clear()
            frame = self._stack[-1]
            entry = next(frame.entries, None)
            if entry is None:
                self._pop()
                continue
            relpath = frame.relprefix + entry.name
            if self._is_left_out(frame, entry, relpath):
                continue
            link_skip = self._check_link(entry, relpath) if entry.is_symlink else None
            if not _is_storable(relpath):
                yield Skip(_printable(relpath), "undecodable-name", "the name is not valid UTF-8")
            elif link_skip is not None:
                yield link_skip
            elif entry.is_dir:
                skip = self._enter_dir(frame, entry, relpath)
                if skip is not None:
                    yield skip
            else:
                yield self._visit_file(entry, relpath)

    def _is_left_out(self, frame: _Frame, entry: _Entry, relpath: str) -> bool:
        if self._filters.outside_scope(relpath, entry.is_dir) or self._filters.drops_by_name(entry):
            return True
        match_path = relpath + "/" if entry.is_dir else relpath
        if self._filters.excludes(match_path) or _ignored_by_layers(frame.layers, match_path):
            return True
        return not entry.is_dir and self._filters.leaves_out_file(relpath)

    def _check_link(self, entry: _Entry, relpath: str) -> Skip | None:
        """Why the symlink ``entry`` must not be followed, or None when its target may be.

        A dangling or looping link is left to the ordinary stat, which reports it.
        """
        try:
            target = os.path.realpath(entry.path, strict=True)
        except (OSError, RuntimeError):
            return None
        if not _is_within(target, self._real_root):
            if self._follow_links:
                return None  # checked like a root when entered: pseudo file systems, revisits
            return Skip(
                relpath, "link-outside", Phrase("links to {target}, outside the indexed folder (see {follow_links})", target=target)
            )
        target_relpath = Path(os.path.relpath(target, self._real_root)).as_posix()
        if target_relpath != "." and self._excludes_target(target_relpath.split("/"), entry.is_dir):
            return Skip(relpath, "link-to-excluded", f"links to {target_relpath}, which is hidden or ignored")
        return None

    def _excludes_target(self, parts: list[str], is_dir: bool) -> bool:
        """Whether the walk itself would leave out the path ``parts`` (relative to the root):
        any folder on the way, or the target itself, hidden, generated, excluded or ignored."""
        layers: tuple[_IgnoreLayer, ...] = ()
        for depth, name in enumerate(parts):
            part_is_dir = is_dir or depth < len(parts) - 1
            layer = self._layer_of_folder("".join(part + "/" for part in parts[:depth]))
            layers = (*layers, layer) if layer is not None else layers
            relpath = "/".join(parts[: depth + 1])
            match_path = relpath + "/" if part_is_dir else relpath
            if (
                self._filters.drops_by_name(_Entry(name, "", part_is_dir, False))
                or self._filters.excludes(match_path)
                or _ignored_by_layers(layers, match_path)
            ):
                return True
        return False

    def _layer_of_folder(self, relprefix: str) -> _IgnoreLayer | None:
        """The ignore rules of the folder ``relprefix`` (read once; unreadable ones count as none)."""
        if relprefix not in self._layers_at:
            folder = os.path.join(self._real_root, relprefix)
            entries = [
                _Entry(name, os.path.join(folder, name), False, os.path.islink(os.path.join(folder, name)))
                for name in IGNORE_FILE_NAMES
                if os.path.lexists(os.path.join(folder, name))
            ]
            lines, _skips = _ignore_lines(entries, relprefix)
            self._layers_at[relprefix] = _IgnoreLayer(relprefix, GitIgnoreSpec.from_lines(lines)) if lines else None
        return self._layers_at[relprefix]

    def _enter_dir(self, frame: _Frame, entry: _Entry, relpath: str) -> Skip | None:
        try:
            st = os.stat(entry.path)
            key = _dir_key(st)
            if key in self._on_path:
                target = self._on_path[key] or "the root"
                return Skip(relpath, "symlink-loop", f"links back to {target}")
            if entry.is_symlink and key in self._entered:
                return Skip(relpath, "symlink-loop", "links to a folder this walk has already been through")
            if st.st_dev in self._pseudo_devices:
                return Skip(relpath, "pseudo-filesystem", "a kernel file system (like /proc), not files")
            self._push(entry.path, relpath + "/", key, frame.layers)
        except OSError as exc:
            return _skip_for_os_error(relpath, exc, is_symlink=entry.is_symlink)
        return None

    def _visit_file(self, entry: _Entry, relpath: str) -> FoundFile | Skip:
        try:
            st = os.stat(entry.path)
        except OSError as exc:
            return _skip_for_os_error(relpath, exc, is_symlink=entry.is_symlink)
        if not stat.S_ISREG(st.st_mode):
            return Skip(relpath, "not-a-regular-file", _describe_file_type(st.st_mode))
        limit = self._max_document_size if extract.document_format(relpath) else self._max_file_size
        if st.st_size > limit:
            return Skip(relpath, "too-large", f"{st.st_size} bytes, over the {limit}-byte limit")
        return FoundFile(Path(entry.path), relpath, st.st_size, st.st_mtime_ns)

    def _push(self, path: str, relprefix: str, key: tuple[int, int], layers: tuple[_IgnoreLayer, ...]) -> None:
        entries = _list_dir(path)
        layer = self._load_ignore_layer(entries, relprefix)
        if layer is not None:
            layers = (*layers, layer)
        self._stack.append(_Frame(relprefix, key, iter(entries), layers))
        self._on_path[key] = relprefix.rstrip("/")
        self._entered.add(key)

    def _pop(self) -> None:
        frame = self._stack.pop()
        del self._on_path[frame.key]

    def _load_ignore_layer(self, entries: list[_Entry], relprefix: str) -> _IgnoreLayer | None:
        """Combine this folder's ignore files; an unreadable one is reported, not fatal."""
        lines, skips = _ignore_lines(entries, relprefix)
        self._pending.extend(skips)
        layer = _IgnoreLayer(relprefix, GitIgnoreSpec.from_lines(lines)) if lines else None
        self._layers_at[relprefix] = layer
        return layer


def _ignore_lines(entries: list[_Entry], relprefix: str) -> tuple[list[str], list[Skip]]:
    """The lines of a folder's ignore files, in the order they apply, and those unreadable."""
    present = {e.name: e for e in entries if e.name in IGNORE_FILE_NAMES and not e.is_dir}
    lines: list[str] = []
    skips: list[Skip] = []
    for name in IGNORE_FILE_NAMES:  # not listing order: .edgeembedignore must come last
        if name in present:
            read = _read_ignore_file(present[name], relprefix + name)
            if isinstance(read, Skip):
                skips.append(read)
            else:
                lines.extend(read)
    return lines, skips


def _is_within(path: str, folder: str) -> bool:
    """Both resolved: ``path`` is ``folder`` or below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def pseudo_filesystem_devices() -> frozenset[int]:
    """The device numbers of the mounted pseudo file systems (``/proc``, ``/sys``, ...).

    Never the device of ``/`` itself: a container whose ``/dev`` is a plain folder must
    not lose its whole disk to this rule.
    """
    points = _pseudo_mount_points()
    try:
        root_device = os.stat("/").st_dev
    except OSError:
        root_device = None
    devices = set()
    for point in points:
        try:
            device = os.stat(point).st_dev
        except OSError:
            continue
        if device != root_device:
            devices.add(device)
    return frozenset(devices)


def _pseudo_mount_points() -> list[str]:
    """From /proc/self/mounts where it exists (Linux), else the usual places."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            rows = [line.split() for line in mounts]
    except OSError:
        return [path for path in PSEUDO_FILESYSTEM_PATHS if os.path.isdir(path)]
    return [
        row[1].replace("\\040", " ") for row in rows if len(row) > 2 and row[2] in PSEUDO_FILESYSTEM_TYPES
    ]


def _list_dir(path: str) -> list[_Entry]:
    """A folder's entries, sorted so that the walk yields relpaths in sorted order.

    A folder sorts as ``name + "/"``: then every path below it sorts exactly where the
    depth-first walk yields it ("a-b.txt" < "a.txt" < "a/b.txt").
    """
    with os.scandir(path) as it:
        entries = [_Entry(e.name, e.path, _is_dir(e), e.is_symlink()) for e in it]
    entries.sort(key=lambda e: e.name + "/" if e.is_dir else e.name)
    return entries


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A symlink loop makes ``is_dir`` raise; as a non-folder it gets stat'ed and reported."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _read_ignore_file(entry: _Entry, relpath: str) -> list[str] | Skip:
    """An ignore file's lines; a FIFO or device under that name is refused rather than opened."""
    try:
        mode = os.stat(entry.path).st_mode
        if not stat.S_ISREG(mode):
            return Skip(relpath, "not-a-regular-file", _describe_file_type(mode))
        with open(entry.path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError as exc:
        return _skip_for_os_error(relpath, exc, entry.is_symlink)


def _ignored_by_layers(layers: tuple[_IgnoreLayer, ...], match_path: str) -> bool:
    """Git's rule: the deepest ignore file with a matching pattern decides."""
    for layer in reversed(layers):
        verdict = layer.spec.check_file(match_path[len(layer.prefix):]).include
        if verdict is not None:
            return verdict
    return False


def gitignore_spec(patterns: Sequence[str]) -> GitIgnoreSpec | None:
    """Patterns with gitignore rules (None for none), the one dialect of every path pattern.

    ``--include``/``--exclude`` when indexing and ``--glob`` when querying all use it, so a
    pattern means the same everywhere: ``*.md`` matches at any depth, ``docs/*.md`` only
    directly in docs/, ``**/*.md`` top-level files too, ``!pattern`` takes back a match.
    """
    return GitIgnoreSpec.from_lines(patterns) if patterns else None


def _dir_key(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


def _is_storable(relpath: str) -> bool:
    """Names that are not UTF-8 decode to lone surrogates, which SQLite text cannot hold."""
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(relpath: str) -> str:
    """Make an undecodable name safe to print and store: bad bytes become ``\\xNN``."""
    return os.fsencode(relpath).decode("utf-8", errors="backslashreplace")


def _describe_file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return f"file type {stat.S_IFMT(mode):o}"


def _skip_for_os_error(relpath: str, exc: OSError, is_symlink: bool = False) -> Skip:
    """Map an OS error on one path to the reason the user sees."""
    detail = exc.strerror or str(exc)
    if exc.errno == errno.ENOENT:
        return Skip(relpath, "broken-symlink" if is_symlink else "vanished", detail)
    if exc.errno == errno.ELOOP:
        return Skip(relpath, "symlink-loop", detail)
    return Skip(relpath, "unreadable", detail)


def read_file(found: FoundFile) -> FileContent | DocumentFile | Skip:
    """Read a discovered file once and turn it into text, or say why it cannot be indexed.

    PDF and Word files (by extension, or a PDF by its first bytes) come back as their
    bytes: parsing them is the sandbox's job, and only needed when the hash changed.
    """
    data = _read_unchanged_bytes(found)
    if isinstance(data, Skip):
        return data
    document_format = extract.document_format(found.relpath, data[:8])
    if document_format is not None:
        return DocumentFile(document_format, data, hashlib.sha256(data).hexdigest())
    decoded = decode_text(data)
    if decoded is None:
        return Skip(found.relpath, "binary", "contains NUL bytes or mostly control characters")
    text, encoding, lossy = decoded
    extracted = extract.to_text(found.relpath, text)
    digest = hashlib.sha256(data).hexdigest()
    return FileContent(extracted.text, digest, encoding, lossy, extracted.kind, extracted.source_lines)


def _open_nonblocking(path: str, flags: int) -> int:
    """If a FIFO took the file's place since ``discover``, opening it must not block."""
    return os.open(path, flags | os.O_NONBLOCK)


def _read_unchanged_bytes(found: FoundFile) -> bytes | Skip:
    """The file's bytes, provided it is still the regular file that ``discover`` stat'ed."""
    try:
        with open(found.path, "rb", opener=_open_nonblocking) as f:
            before = os.fstat(f.fileno())
            if not stat.S_ISREG(before.st_mode):
                return Skip(found.relpath, "not-a-regular-file", _describe_file_type(before.st_mode))
            if (before.st_size, before.st_mtime_ns) != (found.size, found.mtime_ns):
                return Skip(found.relpath, "changed-while-reading", "size or mtime changed since it was listed")
            data = f.read(found.size + 1)
            after = os.fstat(f.fileno())
    except OSError as exc:
        return _skip_for_os_error(found.relpath, exc)
    if len(data) != found.size or (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        return Skip(found.relpath, "changed-while-reading", "the file was written to while being read")
    return data


def decode_text(data: bytes) -> tuple[str, str, bool] | None:
    """Decode file bytes as ``(text, encoding, lossy)``, or ``None`` if they look binary.

    A BOM decides the encoding (UTF-8, UTF-16, UTF-32); without one the bytes are
    UTF-8, and invalid sequences become U+FFFD with ``lossy=True``, so legacy-encoded
    text is still indexed and the caller can warn. Newlines become "\\n".
    """
    encoding, body = _split_bom(data)
    if encoding is None:
        if b"\0" in data[:BINARY_SNIFF_BYTES]:
            return None
        encoding = "utf-8"
    try:
        text, lossy = body.decode(encoding), False
    except UnicodeDecodeError:
        text, lossy = body.decode(encoding, errors="replace"), True
    if _mostly_control_chars(text[:BINARY_SNIFF_BYTES]):
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding, lossy


def bom_encoding(data: bytes) -> str | None:
    """The encoding a byte-order mark at the start of ``data`` names (None: no BOM)."""
    return _split_bom(data)[0]


def _split_bom(data: bytes) -> tuple[str | None, bytes]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, data[len(bom):]
    return None, data


def _mostly_control_chars(sample: str) -> bool:
    if not sample:
        return False
    controls = sum(1 for ch in sample if (ch < " " or ch == "\x7f") and ch not in _TEXT_CONTROL_CHARS)
    return controls / len(sample) > MAX_CONTROL_CHAR_SHARE
