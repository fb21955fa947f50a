"""Discovery and reading against a real tree holding every awkward case we know of."""

from __future__ import annotations

import codecs
import hashlib
import os
import signal
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_embed.files import (
    SKIP_REASONS,
    DocumentFile,
    FileContent,
    FoundFile,
    Skip,
    discover,
    read_file,
)


def write(root: Path, relpath: str, data: bytes | str = "text\n") -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def walk(root: Path, **options) -> tuple[dict[str, FoundFile], dict[str, Skip]]:
    """Run discover and split its output, checking no relpath comes out twice."""
    found: dict[str, FoundFile] = {}
    skipped: dict[str, Skip] = {}
    for item in discover(root, **options):
        assert item.relpath not in found and item.relpath not in skipped, item
        (found if isinstance(item, FoundFile) else skipped)[item.relpath] = item
    return found, skipped


def found_paths(root: Path, **options) -> set[str]:
    return set(walk(root, **options)[0])


def read_one(root: Path, relpath: str) -> FileContent | DocumentFile | Skip:
    return read_file(walk(root)[0][relpath])


@pytest.fixture
def hang_guard() -> Iterator[None]:
    """Fail instead of hanging if anything opens a FIFO (SIGALRM interrupts the open)."""

    def on_alarm(signum, frame):
        raise TimeoutError("blocked: something opened a FIFO")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 10)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def skip_if_permissions_do_not_apply(path: Path) -> None:
    """As root (e.g. in a container) chmod 000 does not block reads, so there is nothing to test."""
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            path.read_bytes()
    except PermissionError:
        return
    pytest.skip("chmod 000 does not stop this user from reading (running as root?)")


# --- discover: order, laziness, what a FoundFile holds -------------------------------


def test_relpaths_come_out_sorted_even_where_folders_and_files_interleave(tmp_path: Path) -> None:
    for rel in ["a.txt", "a/b.txt", "a-b.txt", "B.txt", "z/y/x.txt", "a/a/a.txt"]:
        write(tmp_path, rel)
    relpaths = [item.relpath for item in discover(tmp_path)]
    assert relpaths == ["B.txt", "a-b.txt", "a.txt", "a/a/a.txt", "a/b.txt", "z/y/x.txt"]


def test_found_file_holds_absolute_path_posix_relpath_size_and_mtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "sub/dir/f.txt", "12345")
    monkeypatch.chdir(tmp_path)  # discover must not return paths relative to the cwd
    (found,) = discover(Path("sub"))
    st = path.stat()
    assert found == FoundFile(path, "dir/f.txt", 5, st.st_mtime_ns)
    assert found.path.is_absolute()


def test_discover_is_lazy_and_sees_files_created_after_it_started(tmp_path: Path) -> None:
    write(tmp_path, "a/first.txt")
    (tmp_path / "z").mkdir()
    items = discover(tmp_path)
    assert next(items).relpath == "a/first.txt"
    write(tmp_path, "z/late.txt")
    assert [item.relpath for item in items] == ["z/late.txt"]


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path: Path) -> None:
    depth = sys.getrecursionlimit() + 50
    deep = tmp_path
    for _ in range(depth):  # not mkdir(parents=True): pathlib recurses for that
        deep = deep / "d"
        deep.mkdir()
    (deep / "bottom.txt").write_text("x")
    try:
        assert found_paths(tmp_path) == {"d/" * depth + "bottom.txt"}
    finally:  # shutil.rmtree recurses too: pytest could not clean this tree up later
        (deep / "bottom.txt").unlink()
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent


def test_root_that_is_not_a_folder_raises_at_once(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        discover(write(tmp_path, "file.txt"))
    with pytest.raises(FileNotFoundError):
        discover(tmp_path / "missing")


# --- ignore rules ---------------------------------------------------------------------


def test_nested_gitignore_applies_to_its_subtree_with_negation_anchors_and_dir_patterns(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "*.log\n/top-only.txt\nsecrets/\n# a comment\n")
    write(tmp_path, "sub/.gitignore", "!keep.log\n*.tmp\n/anchored.txt\nout/\n")
    for rel in [
        "a.log", "keep.log", "top-only.txt", "sub/top-only.txt", "secrets/key.txt",
        "sub/secrets/key.txt", "sub/keep.log", "sub/other.log", "sub/x.tmp", "y.tmp",
        "sub/anchored.txt", "sub/deeper/anchored.txt", "sub/out/gen.txt", "sub/deeper/out",
        "sub/deeper/keep.log",
    ]:
        write(tmp_path, rel)
    assert found_paths(tmp_path) == {
        "sub/top-only.txt",  # "/top-only.txt" is anchored to the root
        "sub/keep.log",  # re-included by the nested "!keep.log"
        "sub/deeper/keep.log",  # ... which is unanchored, so it reaches deeper too
        "y.tmp",  # the nested "*.tmp" does not reach up
        "sub/deeper/anchored.txt",  # "/anchored.txt" is anchored to sub/
        "sub/deeper/out",  # "out/" matches folders only
    }


def test_edgeembedignore_overrides_gitignore_and_ignores_more(tmp_path: Path) -> None:
    write(tmp_path, ".gitignore", "*.log\n")
    write(tmp_path, ".edgeembedignore", "!important.log\ndrafts/\n")
    write(tmp_path, "sub/.edgeembedignore", "*.csv\n")
    for rel in ["noise.log", "important.log", "drafts/d.md", "kept.md", "sub/t.csv", "t.csv"]:
        write(tmp_path, rel)
    assert found_paths(tmp_path) == {"important.log", "kept.md", "t.csv"}
    assert found_paths(tmp_path, hidden=True) == {"important.log", "kept.md", "t.csv"}  # not the ignore files


def test_hidden_names_only_with_hidden_and_vcs_metadata_never(tmp_path: Path) -> None:
    for rel in [".env", ".config/app.toml", "visible.md", ".git/HEAD", ".hg/store", "sub/.svn/entries"]:
        write(tmp_path, rel)
    write(tmp_path, "worktree/.git", "gitdir: ../.git/worktrees/w\n")  # .git can be a file
    assert found_paths(tmp_path) == {"visible.md"}
    assert found_paths(tmp_path, hidden=True) == {".env", ".config/app.toml", "visible.md"}


def test_dependency_and_build_folders_are_skipped_but_files_with_those_names_are_not(tmp_path: Path) -> None:
    for rel in [
        "node_modules/lib/index.js", "web/node_modules/x.js", "pkg/__pycache__/m.pyc",
        ".venv/lib/site.py", "venv/bin/activate", "rust/target/debug/out", "dist/bundle.js",
        "docs/build/html.txt", "src/main.py", "notes/build", "notes/target",
    ]:
        write(tmp_path, rel)
    assert found_paths(tmp_path, hidden=True) == {"src/main.py", "notes/build", "notes/target"}


def test_include_keeps_only_matching_files_and_exclude_prunes(tmp_path: Path) -> None:
    for rel in ["README.md", "docs/guide.md", "docs/api.rst", "drafts/wip.md", "src/a.py", "src/docs/x.md"]:
        write(tmp_path, rel)
    assert found_paths(tmp_path, include=["*.md"]) == {"README.md", "docs/guide.md", "drafts/wip.md", "src/docs/x.md"}
    assert found_paths(tmp_path, include=["*.md"], exclude=["drafts/"]) == {"README.md", "docs/guide.md", "src/docs/x.md"}
    assert found_paths(tmp_path, include=["/docs/"]) == {"docs/guide.md", "docs/api.rst"}
    assert found_paths(tmp_path, exclude=["docs", "*.py"]) == {"README.md", "drafts/wip.md"}


@pytest.mark.parametrize("hidden", [False, True])
def test_an_ignore_file_that_is_a_fifo_is_reported_once_and_not_opened(
    tmp_path: Path, hang_guard: None, hidden: bool
) -> None:
    os.mkfifo(tmp_path / ".gitignore")
    write(tmp_path, "a.txt")
    found, skipped = walk(tmp_path, hidden=hidden)
    assert set(found) == {"a.txt"}
    assert skipped == {".gitignore": Skip(".gitignore", "not-a-regular-file", "FIFO")}


# --- skips during discovery -----------------------------------------------------------


def test_files_over_the_size_limit_are_skipped_with_the_limit_inclusive(tmp_path: Path) -> None:
    write(tmp_path, "exact.txt", b"x" * 100)
    write(tmp_path, "over.txt", b"x" * 101)
    found, skipped = walk(tmp_path, max_file_size=100)
    assert set(found) == {"exact.txt"}
    assert skipped["over.txt"].reason == "too-large"
    assert "101" in skipped["over.txt"].detail


def test_symlinks_are_followed_and_loops_and_dangling_links_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "real/doc.md", "# doc\n")
    (tmp_path / "link-to-file.md").symlink_to(tmp_path / "real/doc.md")
    (tmp_path / "link-to-dir").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "real/loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "dangling.md").symlink_to(tmp_path / "nowhere.md")
    (tmp_path / "self").symlink_to(tmp_path / "self")
    found, skipped = walk(tmp_path)
    assert set(found) == {"link-to-file.md", "link-to-dir/doc.md", "real/doc.md"}
    assert found["link-to-file.md"].path == tmp_path / "link-to-file.md"  # not resolved
    assert {rel: s.reason for rel, s in skipped.items()} == {
        "link-to-dir/loop": "symlink-loop",
        "real/loop": "symlink-loop",
        "dangling.md": "broken-symlink",
        "self": "symlink-loop",
    }


def test_links_to_outside_the_root_are_skipped_with_a_note(tmp_path: Path) -> None:
    root, outside = tmp_path / "notes", tmp_path / "outside"
    write(root, "mine.md", "# mine\n")
    write(outside, "secret.txt", "OUTSIDE_SECRET=1\n")
    (root / "link_out.txt").symlink_to(outside / "secret.txt")
    (root / "outside-folder").symlink_to(outside, target_is_directory=True)
    (root / "passwd").symlink_to("/etc/passwd")
    (root / "relative-escape.txt").symlink_to("../outside/secret.txt")
    found, skipped = walk(root)
    assert set(found) == {"mine.md"}
    assert {rel: s.reason for rel, s in skipped.items()} == {
        "link_out.txt": "link-outside",
        "outside-folder": "link-outside",
        "passwd": "link-outside",
        "relative-escape.txt": "link-outside",
    }
    assert str(outside / "secret.txt") in str(skipped["link_out.txt"].detail)
    assert str(skipped["link_out.txt"].detail).endswith("outside the indexed folder (see follow_links)")


def test_hidden_and_ignored_files_are_not_reachable_through_a_link(tmp_path: Path) -> None:
    write(tmp_path, ".env", "API_KEY=hunter2\n")
    write(tmp_path, "keys/private.pem", "-----BEGIN-----\n")
    write(tmp_path, ".hidden/notes.md", "# hidden\n")
    write(tmp_path, "sub/.gitignore", "*.log\n")
    write(tmp_path, "sub/debug.log", "token=abc\n")
    write(tmp_path, ".gitignore", "keys/\n")
    write(tmp_path, "visible.md", "# ok\n")
    (tmp_path / "config.md").symlink_to(".env")
    (tmp_path / "key.md").symlink_to("keys/private.pem")
    (tmp_path / "hidden-dir").symlink_to(".hidden", target_is_directory=True)
    (tmp_path / "log.md").symlink_to("sub/debug.log")
    (tmp_path / "alias.md").symlink_to("visible.md")
    found, skipped = walk(tmp_path)
    assert set(found) == {"alias.md", "visible.md"}
    assert {rel: s.reason for rel, s in skipped.items()} == {
        "config.md": "link-to-excluded",
        "key.md": "link-to-excluded",
        "hidden-dir": "link-to-excluded",
        "log.md": "link-to-excluded",
    }
    # with --hidden, the hidden targets are indexed like every hidden file
    assert set(walk(tmp_path, hidden=True)[0]) >= {"config.md", ".hidden/notes.md"}


def test_a_link_to_the_file_system_root_ends_at_once(tmp_path: Path, hang_guard: None) -> None:
    write(tmp_path, "a.md")
    (tmp_path / "everything").symlink_to("/", target_is_directory=True)
    (tmp_path / "proc").symlink_to("/proc", target_is_directory=True)
    found, skipped = walk(tmp_path)
    assert set(found) == {"a.md"}
    assert {rel: s.reason for rel, s in skipped.items()} == {"everything": "link-outside", "proc": "link-outside"}


def test_pseudo_file_systems_are_never_walked(hang_guard: None) -> None:
    """Indexing / itself: /proc, /sys and /dev are cut at their door (everything else is
    excluded here to keep the walk short; without the rule /proc alone never ends)."""
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    with pytest.raises(OSError, match="kernel file system"):
        next(iter(discover("/proc")))
    found, skipped = walk(Path("/"), exclude=["/*", "!/proc/", "!/sys/", "!/dev/"])
    assert found == {}
    assert {rel: s.reason for rel, s in skipped.items()} == {
        "dev": "pseudo-filesystem", "proc": "pseudo-filesystem", "sys": "pseudo-filesystem",
    }


def test_a_folder_reached_again_through_a_link_is_cut_at_the_first_revisit(tmp_path: Path) -> None:
    """Links between sibling folders would otherwise multiply the walk (a -> b -> a ... )."""
    write(tmp_path, "a/x.md")
    write(tmp_path, "b/y.md")
    (tmp_path / "a/to-b").symlink_to(tmp_path / "b", target_is_directory=True)
    (tmp_path / "b/to-a").symlink_to(tmp_path / "a", target_is_directory=True)
    found, skipped = walk(tmp_path)
    assert set(found) == {"a/x.md", "a/to-b/y.md", "b/y.md"}
    assert {rel: s.reason for rel, s in skipped.items()} == {
        "a/to-b/to-a": "symlink-loop", "b/to-a": "symlink-loop",
    }


def test_fifos_and_sockets_are_skipped_without_being_opened(tmp_path: Path, hang_guard: None) -> None:
    os.mkfifo(tmp_path / "pipe")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        found, skipped = walk(tmp_path)
    assert found == {}
    assert {rel: (s.reason, s.detail) for rel, s in skipped.items()} == {
        "pipe": ("not-a-regular-file", "FIFO"),
        "sock": ("not-a-regular-file", "socket"),
    }


def test_an_unreadable_folder_is_skipped_and_the_walk_goes_on(tmp_path: Path) -> None:
    write(tmp_path, "locked/inside.txt")
    write(tmp_path, "open/after.txt")
    locked = tmp_path / "locked"
    locked.chmod(0)
    try:
        skip_if_permissions_do_not_apply(locked)
        found, skipped = walk(tmp_path)
    finally:
        locked.chmod(0o755)
    assert set(found) == {"open/after.txt"}
    assert skipped["locked"].reason == "unreadable"


def test_an_unreadable_file_is_found_but_reading_it_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "secret.txt")
    path.chmod(0)
    try:
        skip_if_permissions_do_not_apply(path)
        assert read_one(tmp_path, "secret.txt") == Skip("secret.txt", "unreadable", "Permission denied")
    finally:
        path.chmod(0o644)


def test_a_name_that_is_not_utf8_is_skipped_with_a_printable_relpath(tmp_path: Path) -> None:
    with open(os.path.join(os.fsencode(tmp_path), b"bad\xff.txt"), "wb") as f:
        f.write(b"text")
    write(tmp_path, "good.txt")
    found, skipped = walk(tmp_path)
    assert set(found) == {"good.txt"}
    assert skipped["bad\\xff.txt"].reason == "undecodable-name"


def test_non_ascii_names_with_spaces_are_found_and_read(tmp_path: Path) -> None:
    write(tmp_path, "notes/été 2024 笔记.md", "# Été\nnotes\n")
    content = read_one(tmp_path, "notes/été 2024 笔记.md")
    assert isinstance(content, FileContent)
    assert (content.text, content.kind) == ("# Été\nnotes\n", "markdown")


def test_skip_rejects_reasons_outside_the_vocabulary() -> None:
    assert "binary" in SKIP_REASONS
    with pytest.raises(ValueError):
        Skip("a", "no-such-reason", "")


# --- read_file: PDF and Word files ------------------------------------------------------
@pytest.mark.parametrize(
    ("relpath", "data", "document_format"),
    [
        ("manual.pdf", b"%PDF-1.7\n\x00\xff binary body", "pdf"),
        ("Report.DOCX", b"PK\x03\x04\x00\x00 zip body", "docx"),
        ("download", b"%PDF-1.4\n%\xe2\xe3 no extension", "pdf"),
        ("ascii-only.pdf", b"%PDF-1.1\n1 0 obj << >> endobj\n", "pdf"),  # would decode as text
    ],
)
def test_documents_come_back_as_bytes_for_the_extractor(tmp_path: Path, relpath: str, data: bytes, document_format: str) -> None:
    write(tmp_path, relpath, data)
    assert read_one(tmp_path, relpath) == DocumentFile(document_format, data, hashlib.sha256(data).hexdigest())


def test_documents_have_their_own_size_limit(tmp_path: Path) -> None:
    write(tmp_path, "big.pdf", b"%PDF-" + b"x" * 2000)
    write(tmp_path, "big.txt", "x" * 2000)
    found, skipped = walk(tmp_path, max_file_size=1000, max_document_size=3000)
    assert set(found) == {"big.pdf"} and skipped["big.txt"].reason == "too-large"
    found, skipped = walk(tmp_path, max_file_size=1000, max_document_size=1500)
    assert skipped["big.pdf"].detail == "2005 bytes, over the 1500-byte limit"


# --- read_file: decoding ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text", "encoding"),
    [
        ("plain\n".encode(), "plain\n", "utf-8"),
        (codecs.BOM_UTF8 + "bom été\n".encode(), "bom été\n", "utf-8-sig"),
        (codecs.BOM_UTF16_LE + "le 笔记\r\n".encode("utf-16-le"), "le 笔记\n", "utf-16-le"),
        (codecs.BOM_UTF16_BE + "be 笔记\n".encode("utf-16-be"), "be 笔记\n", "utf-16-be"),
        (codecs.BOM_UTF32_LE + "32 笔记".encode("utf-32-le"), "32 笔记", "utf-32-le"),
        (b"dos\r\nmac\runix\n", "dos\nmac\nunix\n", "utf-8"),
        (b"", "", "utf-8"),
        (b"\x1b[31mred\x1b[0m log line\n", "\x1b[31mred\x1b[0m log line\n", "utf-8"),
    ],
    ids=["utf8", "utf8-bom", "utf16le", "utf16be", "utf32le", "newlines", "empty", "ansi-escapes"],
)
def test_text_is_decoded_by_bom_with_newlines_normalised(tmp_path: Path, data: bytes, text: str, encoding: str) -> None:
    write(tmp_path, "f.txt", data)
    content = read_one(tmp_path, "f.txt")
    assert content == FileContent(text, hashlib.sha256(data).hexdigest(), encoding, False, "text")


def test_invalid_utf8_is_decoded_with_replacement_and_marked_lossy(tmp_path: Path) -> None:
    write(tmp_path, "latin1.txt", "café crème\n".encode("latin-1"))
    content = read_one(tmp_path, "latin1.txt")
    assert isinstance(content, FileContent)
    assert (content.text, content.encoding, content.lossy) == ("caf\ufffd cr\ufffdme\n", "utf-8", True)


@pytest.mark.parametrize(
    "data",
    [
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        "utf-16 without a BOM".encode("utf-16-le"),
        bytes(range(1, 32)) * 20 + b"some words",
    ],
    ids=["nul-bytes", "utf16-no-bom", "control-chars"],
)
def test_binary_content_is_skipped(tmp_path: Path, data: bytes) -> None:
    write(tmp_path, "blob.txt", data)
    result = read_one(tmp_path, "blob.txt")
    assert isinstance(result, Skip) and result.reason == "binary"


def test_a_nul_byte_after_the_sniffed_prefix_does_not_make_a_file_binary(tmp_path: Path) -> None:
    write(tmp_path, "late-nul.txt", b"a" * 9000 + b"\x00")
    content = read_one(tmp_path, "late-nul.txt")
    assert isinstance(content, FileContent) and content.text.startswith("aaa")


def test_html_is_read_as_visible_text_and_hashed_as_raw_bytes(tmp_path: Path) -> None:
    raw = b"<html><head><script>evil()</script></head><body><p>Hello</p></body></html>"
    write(tmp_path, "page.html", raw)
    content = read_one(tmp_path, "page.html")
    assert isinstance(content, FileContent)
    assert (content.text, content.kind) == ("Hello", "html")
    assert content.content_hash == hashlib.sha256(raw).hexdigest()


def test_a_file_symlink_reads_its_target(tmp_path: Path) -> None:
    write(tmp_path, "target.py", "print('hi')\n")
    (tmp_path / "alias.py").symlink_to("target.py")
    content = read_one(tmp_path, "alias.py")
    assert isinstance(content, FileContent)
    assert (content.text, content.kind) == ("print('hi')\n", "code")


# --- read_file: the file moved under us -------------------------------------------------


def discovered(root: Path, relpath: str) -> FoundFile:
    return walk(root)[0][relpath]


def test_a_file_deleted_after_discovery_is_skipped_as_vanished(tmp_path: Path) -> None:
    path = write(tmp_path, "gone.txt")
    found = discovered(tmp_path, "gone.txt")
    path.unlink()
    result = read_file(found)
    assert isinstance(result, Skip) and result.reason == "vanished"


def test_a_file_that_grew_after_discovery_is_skipped_as_changed(tmp_path: Path) -> None:
    path = write(tmp_path, "log.txt", "one\n")
    found = discovered(tmp_path, "log.txt")
    with open(path, "a") as f:
        f.write("two\n")
    result = read_file(found)
    assert isinstance(result, Skip) and result.reason == "changed-while-reading"


def test_a_same_size_rewrite_after_discovery_is_caught_by_mtime(tmp_path: Path) -> None:
    path = write(tmp_path, "f.txt", "aaaa")
    found = discovered(tmp_path, "f.txt")
    path.write_text("bbbb")
    os.utime(path, ns=(found.mtime_ns, found.mtime_ns + 1_000_000_000))
    result = read_file(found)
    assert isinstance(result, Skip) and result.reason == "changed-while-reading"


def test_a_file_replaced_by_a_fifo_after_discovery_is_not_opened_blocking(tmp_path: Path, hang_guard: None) -> None:
    path = write(tmp_path, "f.txt")
    found = discovered(tmp_path, "f.txt")
    path.unlink()
    os.mkfifo(path)
    assert stat.S_ISFIFO(path.lstat().st_mode)
    assert read_file(found) == Skip("f.txt", "not-a-regular-file", "FIFO")
