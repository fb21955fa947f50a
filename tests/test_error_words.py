"""Library errors speak no face's language (issue 16): no CLI flag, no `edge-embed` command.

An ``EdgeEmbedError`` raised in the library reaches three faces: the CLI, HTTP clients and
MCP agents. A message saying ``--in`` or ``edge-embed index --rebuild`` misleads the two
that have no such flag; the library says what is wrong and, in ``hint``, names inputs and
operations as ``{terms}`` each face words for itself (``edge_embed/errors.py``).

This reads every module outside ``edge_embed/cli/`` with ``ast`` and checks the string
literals of every error constructed there (the message, the hint, module constants they
name) against the flags and commands the real CLI declares, read from click itself.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from edge_embed import errors
from edge_embed.cli import COMMANDS, cli

PACKAGE = Path(__file__).resolve().parent.parent / "edge_embed"

# Still CLI-worded, in files other helpers were restructuring when the errors were made
# data (issue 16): PENDING until they are converted after the merge. This list may only
# shrink: an entry whose file no longer says such a thing fails the test.
PENDING: set[str] = set()


@functools.cache
def cli_flags() -> frozenset[str]:
    """Every option the edge-embed CLI declares (``--in``, ``-k``...), from click."""
    context = click.Context(cli)
    flags: set[str] = set()
    for name in COMMANDS:
        command = cli.get_command(context, name)
        for param in command.params:
            if isinstance(param, click.Option):
                flags.update(param.opts + param.secondary_opts)
    return frozenset(flags - {"-h", "--help"})


@functools.cache
def cli_words_pattern() -> re.Pattern[str]:
    """A flag as a word of its own (``--in`` but not ``--include-x``; ``-k`` but not
    ``-k8s``), or ``edge-embed COMMAND`` (not "an edge-embed index", the file)."""
    flags = "|".join(sorted((re.escape(flag) for flag in cli_flags()), key=len, reverse=True))
    commands = "|".join(re.escape(name) for name in COMMANDS)
    return re.compile(rf"(?<![\w-])(?:{flags})(?![\w-])|(?<!an )(?<!the )edge-embed (?:{commands})\b")


@functools.cache
def error_names() -> frozenset[str]:
    """The names of EdgeEmbedError and of every subclass defined in the package, however
    deep (repeated until no class is added)."""
    names = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)}
    classes = [
        node
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
    ]
    while True:
        more = {
            node.name
            for node in classes
            if node.name not in names and any(isinstance(base, ast.Name) and base.id in names for base in node.bases)
        }
        if not more:
            return frozenset(names)
        names |= more


def assignments(scope: ast.AST) -> dict[str, list[ast.expr]]:
    """``NAME = <expr>`` in ``scope`` itself (not in functions nested in it)."""
    assigned: dict[str, list[ast.expr]] = {}
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            assigned.setdefault(node.targets[0].id, []).append(node.value)
        stack.extend(ast.iter_child_nodes(node))
    return assigned


def error_calls(tree: ast.Module, names: frozenset[str] | set[str]) -> Iterator[tuple[ast.Call, dict[str, list[ast.expr]]]]:
    """Each call building an error of ``names``, with what the names it can see were
    assigned: the module's constants and its function's locals (an ``advice`` built
    before the raise), each function on its own."""
    module = assignments(tree)
    scopes: list[tuple[ast.AST, dict[str, list[ast.expr]]]] = [(tree, module)]
    scopes += [
        (node, {**module, **assignments(node)})
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    for scope, assigned in scopes:
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue  # its own scope
            if isinstance(node, ast.Call) and called_name(node) in names:
                yield node, assigned
            stack.extend(ast.iter_child_nodes(node))


def literals(node: ast.AST, assigned: dict[str, list[ast.expr]], seen: frozenset[str] = frozenset()) -> list[str]:
    """The string constants in ``node``, following the names it uses to what they were assigned."""
    found = []
    for inner in ast.walk(node):
        if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
            found.append(inner.value)
        elif isinstance(inner, ast.Name) and inner.id in assigned and inner.id not in seen:
            for value in assigned[inner.id]:
                found.extend(literals(value, assigned, seen | {inner.id}))
    return found


def called_name(node: ast.Call) -> str | None:
    """``EdgeEmbedError`` for ``EdgeEmbedError(...)`` and ``errors.EdgeEmbedError(...)``."""
    if isinstance(node.func, ast.Name):
        return node.func.id
    return node.func.attr if isinstance(node.func, ast.Attribute) else None


def library_files() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "cli" not in path.relative_to(PACKAGE).parts)


def cli_worded_errors(path: Path, names: frozenset[str] | set[str], pattern: re.Pattern[str]) -> list[str]:
    """``line: text`` for each error built in ``path`` whose words name a CLI flag or command."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node, assigned in error_calls(tree, names):
        parts = [*node.args, *(keyword.value for keyword in node.keywords)]
        for text in (text for part in parts for text in literals(part, assigned)):
            if pattern.search(text):
                found.append(f"{node.lineno}: {text}")
    return found


def f_string_hints(path: Path, names: frozenset[str] | set[str]) -> list[str]:
    """Errors whose hint is an f-string: user data must go in as values, or a brace in a
    path would be read as a term (``errors.fill``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and called_name(node) in names
        for keyword in node.keywords
        if keyword.arg == "hint" and isinstance(keyword.value, ast.JoinedStr)
    ]


def test_the_pattern_knows_the_cli():
    """The check can fail: it recognises the flags and commands it looks for, and only them."""
    pattern = cli_words_pattern()
    for text in ("unknown --in path", "-k must be at least 1", "run `edge-embed index --rebuild FOLDER`",
                 "`edge-embed pull qwen3-reranker-0.6b`", "try a smaller --ctx"):
        assert pattern.search(text), text
    for text in ("pip install --force-reinstall llama-cpp-python", "edge-embed needs numpy", "top-k results",
                 "in_paths takes folders", "CMAKE_ARGS=-DGGML_CUDA=on", "which an edge-embed index cannot hold"):
        assert not pattern.search(text), text


def test_the_check_finds_a_cli_worded_error(tmp_path):
    source = tmp_path / "bad.py"
    source.write_text('ADVICE = "see --rebuild"\nraise EdgeEmbedError("no", hint=ADVICE)\n', encoding="utf-8")
    assert cli_worded_errors(source, {"EdgeEmbedError"}, cli_words_pattern()) == ["2: see --rebuild"]


def test_the_check_follows_a_local_variable_and_a_qualified_error_name(tmp_path):
    """The writer lock's advice was built in a local variable: the check did not see it."""
    source = tmp_path / "local.py"
    source.write_text(
        "def f(other):\n"
        "    advice = {'w': 'end `serve --watch`'}.get(other, 'wait')\n"
        "    raise errors.EdgeEmbedError(f'busy; {advice}')\n",
        encoding="utf-8",
    )
    assert cli_worded_errors(source, {"EdgeEmbedError"}, cli_words_pattern()) == ["3: end `serve --watch`"]


@pytest.mark.parametrize("path", library_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_library_errors_name_no_cli_flag_or_command(path):
    relative = path.relative_to(PACKAGE).as_posix()
    found = cli_worded_errors(path, error_names(), cli_words_pattern())
    if relative in PENDING:
        assert found, f"{relative} no longer has CLI-worded errors: take it off PENDING"
    else:
        assert not found, f"{relative} words errors for the CLI: {found}"


@pytest.mark.parametrize("path", library_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_hints_take_user_data_as_values(path):
    assert not f_string_hints(path, error_names()), path


# ------------------------------------------------------------------ the data and each face's words
def hint_templates(path: Path, names: frozenset[str] | set[str]) -> list[tuple[int, str, set[str]]]:
    """(line, hint text, the values given) of each error built in ``path`` with a hint."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node, assigned in error_calls(tree, names):
        given = {keyword.arg for keyword in node.keywords if keyword.arg}
        for keyword in node.keywords:
            if keyword.arg == "hint":
                found.append((node.lineno, "".join(literals(keyword.value, assigned)), given))
    return found


@pytest.mark.parametrize("path", library_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_every_term_a_hint_names_is_known(path):
    """A typo such as ``{in_path}`` would reach every face as it is written."""
    for line, hint, given in hint_templates(path, error_names()):
        names = set(re.findall(r"\{([a-z_]+)\}", hint))
        unknown = names - set(errors.TERMS) - given
        assert not unknown, f"{path.name}:{line}: {sorted(unknown)} in {hint!r}"


def test_values_are_filled_in_once_so_braces_in_user_data_stay():
    error = errors.EdgeEmbedError(
        "unknown path /a/{k}", param="in_paths", hint="{in_paths} takes folders, not {given}", given="/b/{in_paths}"
    )
    assert str(error) == "unknown path /a/{k}; in_paths takes folders, not /b/{in_paths}"
    assert error.render({"in_paths": "--in"}) == "unknown path /a/{k}; --in takes folders, not /b/{in_paths}"
    assert errors.fill("{nothing} {k}", {}, {}) == "{nothing} k"
    with pytest.raises(ValueError, match="named like terms"):
        errors.EdgeEmbedError("x", hint="{model}", model="m")


def test_a_term_word_may_name_a_value():
    missing = errors.ModelNotFound("model m is not downloaded yet", "m", hint="{pull}")
    assert str(missing) == "model m is not downloaded yet; download m"
    assert missing.render({"pull": "run `edge-embed pull {model_name}`"}).endswith("; run `edge-embed pull m`")


def test_kinds_are_a_closed_set_with_class_defaults():
    with pytest.raises(ValueError, match="unknown error kind"):
        errors.EdgeEmbedError("x", kind="oops")  # type: ignore[arg-type]
    defaults = {
        errors.EdgeEmbedError: "invalid",
        errors.ModelNotFound: "not_found",
        errors.IndexMismatch: "conflict",
        errors.IndexBusy: "busy",
        errors.IndexChanged: "busy",
        errors.IndexFull: "storage_full",
        errors.IndexCorrupt: "damaged",
        errors.IndexReadOnly: "unavailable",
        errors.LlamaCppCrashes: "unavailable",
        errors.DependencyError: "unavailable",
    }
    for cls, kind in defaults.items():
        assert cls.kind == kind, cls
    assert errors.IndexBusy("locked", "/i.db", "database is locked", hint="try again").path == "/i.db"
    assert errors.EdgeEmbedError("x", kind="conflict").kind == "conflict" and errors.EdgeEmbedError.kind == "invalid"


def test_context_and_more_advice_keep_the_error():
    missing = errors.ModelNotFound("model m is not downloaded yet", "m", hint="{pull}")
    same = missing.add_context("this index was built with m").add_hint("or search without the model ({mode} keyword)")
    assert same is missing and missing.model_name == "m"
    assert str(missing) == (
        "this index was built with m: model m is not downloaded yet; download m; or search without the model (mode keyword)"
    )


def test_each_face_has_one_word_per_term_and_a_status_per_kind():
    from edge_embed.cli.wording import CLI_WORDS
    from edge_embed.server.mcp_tools import MCP_WORDS
    from edge_embed.server.protocol import HTTP_WORDS, STATUS_OF_KIND

    assert set(CLI_WORDS) == set(errors.TERMS), "the CLI words every term: a flag or a command"
    assert set(HTTP_WORDS) <= set(errors.TERMS) and set(MCP_WORDS) <= set(errors.TERMS)
    assert set(STATUS_OF_KIND) == errors.KINDS
    flags = cli_flags()
    for term, word in CLI_WORDS.items():
        flag = word.split()[0] if word.startswith("-") else None
        assert flag is None or flag in flags, f"{term}: {word} is not a flag of the CLI"


def test_the_term_check_finds_a_typo(tmp_path):
    source = tmp_path / "typo.py"
    source.write_text('raise EdgeEmbedError("no", hint="{in_path} takes folders", root="/r")\n', encoding="utf-8")
    [(line, hint, given)] = hint_templates(source, {"EdgeEmbedError"})
    assert (line, hint, given) == (1, "{in_path} takes folders", {"hint", "root"})
    assert set(re.findall(r"\{([a-z_]+)\}", hint)) - set(errors.TERMS) - given == {"in_path"}


def test_our_client_rebuilds_the_library_error_and_tolerates_anything_else():
    """`query` through a server words the error as the CLI (its data comes back), and an
    answer without that data, or with nonsense in it, is still one line, not a crash."""
    from edge_embed.cli.wording import cli_message
    from edge_embed.server.client import refused
    from edge_embed.server.protocol import library_error

    original = errors.ModelNotFound("model m is not downloaded yet", "m", hint="{pull}")
    rebuilt = refused(library_error(original).body()["error"], 404)
    assert cli_message(rebuilt) == cli_message(original) == "model m is not downloaded yet; run `edge-embed pull m`"
    assert (rebuilt.kind, rebuilt.param, rebuilt.status) == ("not_found", "model", 404)
    assert str(refused({"message": "plain", "edge_embed": {"kind": "bogus", "message": "x"}}, 400)) == "plain"
    odd = {"message": "m", "edge_embed": {"kind": "invalid", "message": "x", "hint": 3, "values": {"status": "1"}}}
    assert str(refused(odd, 400)) == "x" and str(refused("not an object", 400)) == "not an object"
    named_like_terms = {"message": "m", "edge_embed": {"kind": "invalid", "message": "x", "values": {"k": "1", "index": "2"}}}
    assert str(refused(named_like_terms, 400)) == "x"  # was a ValueError: values may not be named like terms
    named_template = {"message": "m", "edge_embed": {"kind": "invalid", "message": "x", "hint": "see {template}", "values": {"template": "t"}}}
    assert cli_message(refused(named_template, 400)) == "x; see t"  # was a TypeError: Phrase's own argument


# ------------------------------------------------------------------ the library's other texts (errors.Phrase)
# Why a search reranks, a plan's notes, a skipped link's detail, an upgrade to apply: texts
# that are not errors reach the same three faces (/v1/search's `rerank`, logs of `serve`),
# so the library names no CLI word in any text; they are Phrases whose {terms} each face
# words. The server is a face (its texts about `serve`'s own options are its to word).
# Library strings that name a CLI word on purpose, each with why: (module, text).
NAMED_ON_PURPOSE = {
    ("store/lock.py", "edge-embed index"): "the lock file's holder: which command writes, as another process reads it",
    ("api.py", "edge-embed watch"): "the same, for a watcher",
    ("runtime/amx.py", "-m"): "`python -m`: the probe's own command line",
}


def face_free_files() -> list[Path]:
    """The library without its faces (cli/ and server/)."""
    return [path for path in library_files() if "server" not in path.relative_to(PACKAGE).parts]


def docstrings(tree: ast.Module) -> set[int]:
    """The ids of the docstring constants of ``tree``: prose for readers of the code."""
    owners = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, owners) and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def cli_worded_texts(path: Path, pattern: re.Pattern[str]) -> list[str]:
    """``line: text`` for every string literal of ``path`` (f-strings' parts included, docstrings
    not) that names a CLI flag or command."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = docstrings(tree)
    return [
        f"{node.lineno}: {node.value}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip
        and pattern.search(node.value)
    ]


def test_the_text_check_finds_a_cli_worded_note(tmp_path):
    source = tmp_path / "note.py"
    source.write_text(
        '"""Docs may say --ctx."""\nnote = f"lower --gpu-layers to {n}"\nok = Phrase("lower {gpu_layers}")\n', encoding="utf-8"
    )
    assert cli_worded_texts(source, cli_words_pattern()) == ["2: lower --gpu-layers to "]


@pytest.mark.parametrize("path", face_free_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_library_texts_name_no_cli_flag_or_command(path):
    relative = path.relative_to(PACKAGE).as_posix()
    allowed = {text for module, text in NAMED_ON_PURPOSE if module == relative}
    found = [line for line in cli_worded_texts(path, cli_words_pattern()) if line.split(": ", 1)[1] not in allowed]
    assert not found, f"{relative} words a text for the CLI (make it an errors.Phrase): {found}"


def test_what_is_named_on_purpose_is_still_there():
    """The exceptions may only shrink: one that no longer occurs fails here."""
    for module, text in NAMED_ON_PURPOSE:
        assert any(line.split(": ", 1)[1] == text for line in cli_worded_texts(PACKAGE / module, cli_words_pattern())), module


def phrase_templates(path: Path) -> list[tuple[int, str, set[str]]]:
    """(line, template, the values given) of each ``Phrase(...)`` built in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node, assigned in error_calls(tree, {"Phrase"}):
        if node.args:
            found.append((node.lineno, "".join(literals(node.args[0], assigned)), {k.arg for k in node.keywords if k.arg}))
    return found


@pytest.mark.parametrize("path", library_files(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_every_name_a_phrase_fills_in_is_a_term_or_given(path):
    for line, template, given in phrase_templates(path):
        names = set(re.findall(r"\{([a-z_]+)\}", template))
        unknown = names - set(errors.TERMS) - given
        assert not unknown, f"{path.name}:{line}: {sorted(unknown)} in {template!r}"


def test_a_phrase_is_said_in_each_face_s_words_nested_phrases_too():
    from edge_embed.cli.wording import CLI_WORDS, cli_text
    from edge_embed.server.protocol import HTTP_WORDS

    reason = errors.Phrase("off: {device}; {rerank_on} turns it on", device=errors.Phrase("the CPU ({why})", why=errors.Phrase("{cpu} set")))
    assert str(reason) == "off: the CPU (force_cpu set); rerank=True turns it on"
    assert cli_text(reason) == reason.render(CLI_WORDS) == "off: the CPU (--cpu set); --rerank turns it on"
    assert reason.render(HTTP_WORDS) == 'off: the CPU (force_cpu set); "rerank": true turns it on'
    assert cli_text("plain text") == errors.say("plain text") == "plain text"
    braces = errors.Phrase("links to {target} (see {follow_links})", target="/a/{k}")
    assert cli_text(braces) == "links to /a/{k} (see --follow-links)", "a value is filled in once"
    with pytest.raises(ValueError, match="named like terms"):
        errors.Phrase("{model}", model="m")


def test_a_phrase_travels_as_data_and_nonsense_does_not_crash_the_reader():
    """/v1/search sends its rerank reason as data too: `query --explain` through a server
    words it as the CLI would have (tests/test_serve.py runs both)."""
    from edge_embed.server.client import rerank_reason

    reason = errors.Phrase("on ({rerank_on}): {label} on {device}", label="r.gguf", device=errors.Phrase("the GPU ({gpu})", gpu="X"))
    assert errors.Phrase.from_dict(reason.to_dict()) == reason
    assert rerank_reason({"rerank": "words", "rerank_phrase": reason.to_dict()}) == reason
    for junk in (None, 3, {"template": 1, "values": {}}, {"template": "x", "values": {"k": "1"}},
                 {"template": "x", "values": {"a": 3}}, {"template": "x", "values": {"a": {"template": "y"}}}):
        assert rerank_reason({"rerank": "the server's words", "rerank_phrase": junk}) == "the server's words", junk
    assert rerank_reason({}) == "off"
    named_template = {"template": "see {template}", "values": {"template": "t"}}
    assert str(rerank_reason({"rerank": "words", "rerank_phrase": named_template})) == "see t"  # was a TypeError


def test_the_cli_says_a_library_log_record_in_its_words():
    import logging

    from edge_embed.cli.common import cli_log_message

    note = errors.Phrase("{index_again} once to apply them", root="/r")
    assert cli_log_message(logging.LogRecord("edge_embed", 30, "f", 1, note, None, None)) == "run `edge-embed index /r` once to apply them"
    record = logging.LogRecord("edge_embed", 30, "f", 1, "watch: %s (%d)", (note, 2), None)
    assert cli_log_message(record) == "watch: run `edge-embed index /r` once to apply them (2)"
    assert str(note) == "index /r again once to apply them"
