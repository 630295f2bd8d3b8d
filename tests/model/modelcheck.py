"""The long run of the model-based test (scripts/modelcheck runs this inside the environment).

Runs test_model.py's random sequences in several worker processes (each its own Home
Assistant, node and proxy; they mostly wait, so four fit on two cores), in chunks of
``--chunk`` sequences with a fresh seed each, until ``--sequences`` have been checked. A chunk
that finds a violation stops there (Hypothesis shrinks it and the shrunk steps are recorded);
the worker goes on with the next chunk. Writes the totals to ``--out`` (JSON) and to the
model-check block of docs/reliability.md.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
import json
import os
from pathlib import Path
import random
import re
import subprocess
import sys
import threading
import time
from typing import Any

REPO = Path(__file__).resolve().parents[2]
START = "<!-- modelcheck:start -->"
END = "<!-- modelcheck:end -->"
KEPT_RUNS = 10
_DATED_ROW = re.compile(r"\| \d{4}-\d{2}-\d{2} \|")


def run_chunk(
    worker: int, chunk: int, seed: int, count: int, runs: Path, steps: int
) -> dict[str, Any]:
    report = runs / f"w{worker}-c{chunk}.json"
    log = runs / f"w{worker}-c{chunk}.log"
    env = {
        **os.environ,
        "DX_MODEL_EXAMPLES": str(count),
        "DX_MODEL_STEPS": str(steps),
        "DX_MODEL_SEED": str(seed),
        "DX_MODEL_REPORT": str(report),
    }
    with log.open("w") as out:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "--timeout=0",
                "-k",
                "random",
                "tests/model/test_model.py",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    if report.exists():
        data = json.loads(report.read_text())
    else:  # the run did not get as far as its report: count it as a violation
        tail = log.read_text(errors="replace").splitlines()[-30:]
        data = {
            "seed": seed,
            "sequences": 0,
            "checked": 0,
            "steps": 0,
            "violation": "no report; pytest said:\n" + "\n".join(tail),
            "outcomes": {},
        }
    data["exit"] = result.returncode
    data["log"] = str(log.relative_to(REPO)) if log.is_relative_to(REPO) else str(log)
    return data


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "modelcheck.json")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--commit", default="")
    parser.add_argument(
        "--aggregate",
        type=float,
        metavar="SECONDS",
        help="run nothing: total the chunk reports already in --runs (a run that took SECONDS)",
    )
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    lock = threading.Lock()
    checked = 0
    results: list[dict[str, Any]] = []
    started = time.monotonic()

    def worker(index: int) -> None:
        nonlocal checked
        chunk = 0
        while True:
            with lock:
                left = args.sequences - checked
                if left <= 0:
                    return
                count = min(args.chunk, max(1, left))
                checked += count  # reserved; corrected by what the chunk checked
                seed = rng.randrange(2**32)
            data = run_chunk(index, chunk, seed, count, args.runs, args.steps)
            chunk += 1
            with lock:
                checked += int(data.get("checked") or 0) - count
                if not data.get("violation") and not data.get("checked"):
                    checked += count  # an aborted chunk must not loop forever
                results.append(data)
                violation = data.get("violation")
                print(
                    f"[worker {index}] seed {seed}: {data.get('checked')} sequences"
                    f"{', VIOLATION' if violation else ''} "
                    f"({checked}/{args.sequences}, {time.monotonic() - started:.0f} s)",
                    flush=True,
                )

    if args.aggregate is None:
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(worker, range(args.workers)))
        seconds = time.monotonic() - started
    else:
        seconds = args.aggregate
        for report in sorted(args.runs.glob("w*-c*.json")):
            data = json.loads(report.read_text())
            data.setdefault("log", str(report.with_suffix(".log")))
            results.append(data)
    outcomes: dict[str, int] = {}
    for data in results:
        for key, value in (data.get("outcomes") or {}).items():
            outcomes[key] = outcomes.get(key, 0) + value
    violations = [
        {"seed": d["seed"], "log": d["log"], "violation": d["violation"]}
        for d in results
        if d.get("violation")
    ]
    commit = args.commit
    summary = {
        "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": commit,
        "sequences": sum(int(d.get("checked") or 0) for d in results),
        "steps": sum(int(d.get("steps") or 0) for d in results),
        "max_steps_per_sequence": args.steps,
        "workers": args.workers,
        "seconds": round(seconds),
        "violations": len(violations),
        "runs": str(args.runs),
        "details": violations,
        "seeds": [d["seed"] for d in results],
        "outcomes": dict(sorted(outcomes.items())),
    }
    args.out.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    update_doc(summary, args.out)
    print(
        f"{summary['sequences']} sequences ({summary['steps']} steps) in {seconds:.0f} s "
        f"with {args.workers} workers: {len(violations)} violations; {args.out}"
    )
    for v in violations:
        print(f"--- seed {v['seed']} ({v['log']}):\n{v['violation']}\n")
    return 1 if violations else 0


def update_doc(summary: dict[str, Any], out: Path) -> None:
    doc = REPO / "docs" / "reliability.md"
    text = doc.read_text()
    if START not in text or END not in text:
        return
    minutes = summary["seconds"] / 60
    row = (
        f"| {summary['finished'][:10]} | `{summary['commit']}` | {summary['sequences']} "
        f"| {summary['steps']} | {summary['violations']} | {minutes:.0f} min "
        f"({summary['workers']} workers) | `{out.relative_to(REPO)}` |"
    )
    head, rest = text.split(START, 1)
    block, tail = rest.split(END, 1)
    # The earlier runs stay below the new one (newest first, at most KEPT_RUNS rows).
    earlier = [line for line in block.splitlines() if _DATED_ROW.match(line)]
    rows = [row, *earlier][:KEPT_RUNS]
    table = (
        "\n| date | commit | sequences | steps | violations | time | details |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )
    doc.write_text(head + START + table + END + tail)


if __name__ == "__main__":
    sys.exit(main())
