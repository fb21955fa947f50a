#!/usr/bin/env python3
"""kill -9 trials: an index survives being killed at any instant of any command.

N trials on ONE index (tiny test model, a corpus of notes that changes as it goes). Each
trial starts one command as a user would (a fresh `python -m edge_embed` process) and
kills it with SIGKILL at a random instant:

* create  - a brand-new index, killed in its first instants (just after the file appears);
* index   - a few notes rewritten, one replaced, then `index`, killed while it works;
* rebuild - `index --rebuild`, killed while it works: the old index must be left exactly
            as it was (same files, chunks, vectors), or be wholly the new one if it ended;
* compact - `edge-embed compact`, killed while it works: same content before and after.
            Only when this edge-embed has the command (it is probed, see HAS_COMPACT).

After every kill: `integrity_check` must be ok, and the next run (a complete `index`)
must succeed and leave every note indexed with a vector per chunk and no partial rebuild
file. At the end the index must equal an uninterrupted index of the final corpus: the
same files, the same chunks, and the same vectors (cosine > 0.9999: batch composition may
move the last float bits).

    python scripts/kill_trials.py                 # 100 trials, or as many as 9 minutes allow
    python scripts/kill_trials.py --trials 20 --json --budget-s 3600
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_embed.store import Store
from edge_embed.testing import write_tiny_qwen3

WORDS = "keys garden python travel music budget backup kernel recipes running vault tomato".split()
CHUNKING = ["--chunk-tokens", "96", "--overlap", "8"]


# ------------------------------------------------------------------ corpus
def note_text(rng: random.Random, title: str) -> str:
    sections = []
    for s in range(rng.randint(1, 4)):
        words = " ".join(rng.choice(WORDS) + rng.choice(["", "s", "ing"]) for _ in range(rng.randint(15, 60)))
        sections.append(f"## Section {s}\n\n{words}.\n")
    return f"# {title}\n\n" + "\n".join(sections)


def make_corpus(root: Path, files: int, rng: random.Random) -> None:
    for i in range(files):
        folder = root / WORDS[i % len(WORDS)]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note-{i:04d}.md").write_text(note_text(rng, f"Note {i}"))


def edit_corpus(root: Path, rng: random.Random, trial: int) -> None:
    """Rewrite three notes and replace one by a new note: work for the next `index`."""
    notes = sorted(root.rglob("*.md"))
    for path in rng.sample(notes, 3):
        path.write_text(note_text(rng, f"{path.stem} edited in trial {trial}"))
    gone = rng.choice(notes)
    gone.unlink()
    (gone.parent / f"new-{trial:04d}.md").write_text(note_text(rng, f"New in trial {trial}"))


# ------------------------------------------------------------------ commands
def edge_embed(*args: object) -> list[str]:
    return [sys.executable, "-m", "edge_embed", *map(str, args)]


def index_command(db: Path, root: Path, model: Path, *extra: str) -> list[str]:
    return edge_embed("index", root, "--db", db, "--model", model, "--quiet", *CHUNKING, *extra)


def has_compact() -> bool:
    """HOOK: `edge-embed compact` (issue 7 item 3) joins the trials once this edge-embed has it."""
    return subprocess.run(edge_embed("compact", "--help"), capture_output=True).returncode == 0


def remove_index(db: Path) -> None:
    for path in db.parent.glob(db.name + "*"):
        path.unlink()


def timed_run(command: list[str]) -> float:
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"an uninterrupted run failed: {' '.join(command)}\n{done.stderr}")
    return time.monotonic() - started


# ------------------------------------------------------------------ state
def index_state(db: Path) -> dict:
    """Files, chunks and vectors (by chunk text hash) of an index; integrity checked first."""
    with Store.open(db, create=False) as store:
        problems = store.maintenance.integrity_check()
        if problems != "ok":
            raise AssertionError(f"integrity_check: {problems}")
        conn = store._conn  # read-only look at the rows, as the tests do
        files = set(conn.execute("SELECT relpath, content_hash FROM files"))
        chunks = set(conn.execute(
            "SELECT f.relpath, c.seq, c.text_hash, c.start_line, c.end_line FROM chunks c JOIN files f ON f.id = c.file_id"
        ))
        settings = store.meta.settings()
        vectors = {} if settings is None else {  # a new index gets its vector table with its settings
            text_hash: np.frombuffer(blob, dtype=np.float32)
            for text_hash, blob in conn.execute(
                "SELECT c.text_hash, v.embedding FROM chunks c JOIN chunk_vectors v ON v.chunk_id = c.id"
            )
        }
    return {"files": files, "chunks": chunks, "vectors": vectors, "settings": settings, "vector_rows": len(vectors)}


def same_state(a: dict, b: dict) -> str:
    """'' when equal (vectors by cosine), else what differs."""
    for key in ("files", "chunks", "settings"):
        if a[key] != b[key]:
            return f"{key} differ"
    if a["vectors"].keys() != b["vectors"].keys():
        return "vectors differ (other chunk texts)"
    worst = min((float(np.dot(a["vectors"][h], b["vectors"][h])) for h in a["vectors"]), default=1.0)
    return "" if worst > 0.9999 else f"vectors differ (cosine {worst:.6f})"


def partial_rebuilds(db: Path) -> list[str]:
    return [path.name for path in db.parent.iterdir() if ".rebuild-" in path.name]


# ------------------------------------------------------------------ one trial
def kill_after(command: list[str], delay: float, wait_for: Path | None = None) -> subprocess.CompletedProcess:
    """Start ``command``, SIGKILL it ``delay`` s later (after ``wait_for`` exists, if given)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if wait_for is not None:
        while not wait_for.exists() and process.poll() is None:
            time.sleep(0.001)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, "", stderr)


def run_trial(phase: str, trial: int, rng: random.Random, db: Path, root: Path, model: Path, durations: dict) -> str:
    """One kill, then the checks; returns '' or what went wrong."""
    before = None
    if phase == "create":
        remove_index(db)
        ended = kill_after(index_command(db, root, model), rng.uniform(0, 0.05), wait_for=db)
    elif phase == "index":
        edit_corpus(root, rng, trial)
        ended = kill_after(index_command(db, root, model), rng.uniform(0, durations["index"]))
    elif phase == "rebuild":
        before = index_state(db)
        ended = kill_after(index_command(db, root, model, "--rebuild"), rng.uniform(0, durations["rebuild"]))
    else:
        before = index_state(db)
        ended = kill_after(edge_embed("compact", "--db", db), rng.uniform(0, durations["compact"]))
    killed = ended.returncode == -signal.SIGKILL
    if not killed and ended.returncode != 0:
        return f"{phase} failed by itself (exit {ended.returncode}): {ended.stderr.strip()[-300:]}"
    if db.exists():
        after = index_state(db)  # integrity_check ok, or AssertionError
        if before is not None and killed and phase == "rebuild" and same_state(before, after):
            return f"a killed rebuild changed the old index ({same_state(before, after)})"
        if before is not None and phase == "compact" and same_state(before, after):
            return f"compact changed the content ({same_state(before, after)})"
    done = subprocess.run(index_command(db, root, model), capture_output=True, text=True)
    if done.returncode != 0:
        return f"the next run after a killed {phase} failed: {done.stderr.strip()[-300:]}"
    state = index_state(db)
    notes = len(list(root.rglob("*.md")))
    if len(state["files"]) != notes or state["vector_rows"] != len({c[2] for c in state["chunks"]}):
        return f"after the next run: {len(state['files'])} files for {notes} notes, {state['vector_rows']} vectors"
    if partial_rebuilds(db):
        return f"partial rebuild files left after the next run: {partial_rebuilds(db)}"
    return ""


# ------------------------------------------------------------------ main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--files", type=int, default=30, help="notes in the corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=540,
                        help="start no trial after this many seconds (the final comparison still runs)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="edge-embed-kill-trials-"))
    started = time.monotonic()
    try:
        model = write_tiny_qwen3(work / "tiny.gguf").path
        root = work / "notes"
        make_corpus(root, args.files, rng)
        db = work / "index.db"
        durations = {"index": timed_run(index_command(db, root, model))}
        durations["rebuild"] = timed_run(index_command(db, root, model, "--rebuild"))
        phases = ["create", "index", "rebuild"]
        if has_compact():
            durations["compact"] = timed_run(edge_embed("compact", "--db", db))
            phases.append("compact")
        failures: list[str] = []
        counts = dict.fromkeys(phases, 0)
        trials = 0
        for trial in range(args.trials):
            if time.monotonic() - started > args.budget_s:
                break
            trials += 1
            phase = rng.choice(phases)
            counts[phase] += 1
            try:
                problem = run_trial(phase, trial, rng, db, root, model, durations)
            except AssertionError as exc:
                problem = f"after a killed {phase}: {exc}"
            if problem:
                failures.append(f"trial {trial} ({phase}): {problem}")
            print(f"trial {trial} ({phase}): {problem or 'ok'} [{time.monotonic() - started:.0f} s]", file=sys.stderr)
        reference = work / "reference.db"
        timed_run(index_command(reference, root, model))
        difference = same_state(index_state(db), index_state(reference))
        if difference:
            failures.append(f"final state differs from an uninterrupted index: {difference}")
        result = {
            "trials": trials,
            "by_phase": counts,
            "failures": len(failures),
            "compact_in_trials": "compact" in phases,
            "seconds": round(time.monotonic() - started, 1),
            "uninterrupted_s": {phase: round(seconds, 2) for phase, seconds in durations.items()},
            "problems": failures,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['trials']} kill -9 trials {result['by_phase']}: {result['failures']} failures "
              f"in {result['seconds']} s" + ("" if result["compact_in_trials"] else " (no `compact` command yet)"))
        for problem in failures:
            print(f"  {problem}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
