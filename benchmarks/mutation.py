"""Mutation testing of the query pipeline with mutmut, in full or on a seeded random sample.

    python -m benchmarks.mutation                      # every mutant (hours: nightly)
    python -m benchmarks.mutation --sample 200 --seed 1 --only pql/plan pql/execute
    python -m benchmarks.mutation --only pql/plan pql/execute      # every mutant of two packages
    python -m benchmarks.mutation --sample 30 --only pql/plan pql/execute --min-score 90 \
        --skip pql/execute/spark --max-minutes 40                                      # CI

mutmut (configured under ``[tool.mutmut]`` in pyproject.toml) mutates ``pql/plan``,
``pql/execute``, ``pql/storage`` and ``pql/analyze.py``; each mutant runs only the tests that
reach the function it changes. A first cheap run generates the mutants and maps tests to
functions; then every mutant of the packages under ``--only`` runs, or with ``--sample`` a sample
drawn with ``--seed`` and stratified by source file: each file gets its share of the sample in
proportion to its mutants (at least one), so a small file is not left out by chance. The score per package and every surviving mutant's diff go to ``--report``
(``benchmarks/results/mutation.md``). See docs/testing.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Callable, Collection
from pathlib import Path

PACKAGES = ("pql/plan", "pql/execute", "pql/storage", "pql/analyze.py")
MUTANTS = Path("mutants")
EQUIVALENT = Path(__file__).with_name("equivalent_mutants.toml")  # reviewed, each with a reason
LOG = Path("mutants.log")  # mutmut's output when the run is piped

# mutmut's exit codes (mutmut.stats.status_by_exit_code), kept here so the report needs no import
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", None: "not run"}
TIMEOUTS = {36, 24, -24, 152, 255}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=0, help="run this many mutants (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=list(PACKAGES), help="packages to sample")
    parser.add_argument(
        "--skip", nargs="*", default=[], help="leave out these folders (e.g. pql/execute/spark)"
    )
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report", type=Path, default=Path("benchmarks/results/mutation.md"))
    parser.add_argument("--report-only", action="store_true", help="report the last run")
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop mutmut after this many minutes; the mutants it has not judged then count as "
        "not run, which fails --min-score (CI: a clear failure before the job's own limit)",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="exit 1 unless every package sampled scores at least this (percent) and every "
        "chosen mutant has a result (CI)",
    )
    args = parser.parse_args(argv)
    env = {
        **os.environ,
        "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "mutation"),
        # mutmut runs a mutant's tests in the order of a set of names: a fixed hash seed makes
        # that order the same in every run, so a test that depends on order fails every time.
        "PYTHONHASHSEED": "0",
    }
    started = time.monotonic()
    deadline = None if args.max_minutes is None else started + 60 * args.max_minutes
    chosen: list[str] | None = None
    mutmut = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.max_children)]
    if not args.report_only and not _names():
        # generate the mutants and the test map with one cheap mutant (one test reaches it)
        _mutmut([*mutmut, "pql.plan.nodes.x__span__mutmut_1"], env, deadline)
    pool = sorted(
        n
        for n in _names()
        if _package(n) in args.only
        and not any(_module(n).replace(".", "/").startswith(k.rstrip("/")) for k in args.skip)
    )
    if args.sample:  # the same sample again with --report-only
        chosen = _stratified(pool, args.sample, random.Random(args.seed))
    elif set(args.only) != set(PACKAGES) or args.skip:
        chosen = pool
    listed = listed_equivalents()
    # A chosen mutant reviewed as equivalent whose diff still adds the reviewed line survives
    # by construction, after running every test that reaches it: it is confirmed, not run.
    ahead = equivalent([n for n in chosen or () if n in listed], listed, _diff)
    if not args.report_only:
        _mutmut([*mutmut, *(n for n in chosen or () if n not in ahead)], env, deadline)
    command = " ".join(["python -m benchmarks.mutation", *(argv or sys.argv[1:])])
    results = _results()
    survivors = [n for n in results if _status(results[n]) == "survived"]
    same = equivalent(survivors, listed, _diff) | ahead
    _report(args.report, chosen, command, time.monotonic() - started, args, same)
    print(args.report.read_text(encoding="utf-8"))
    if args.min_score is None:
        return 0
    problems = gate(chosen if chosen is not None else pool, results, args.min_score, same)
    for problem in problems:
        print(f"mutation gate: {problem}", file=sys.stderr)
    return 1 if problems else 0


def gate(
    names: list[str],
    results: dict[str, int | None],
    min_score: float,
    same: Collection[str] = (),
) -> list[str]:
    """What keeps ``names`` from passing: a mutant without a result (mutmut did not run it, or
    it ended oddly), or a package whose score (killed / judged) is under ``min_score``. A
    mutant in ``same`` (confirmed equivalent, see :func:`equivalent`) that survived, or was
    not run because it was confirmed beforehand, is not judged."""
    problems = []
    judged: dict[str, Counter[str]] = defaultdict(Counter)
    for name in names:
        status = _status(results.get(name))
        if status in ("survived", "not run") and name in same:
            continue
        if status == "not run" or status.startswith("suspicious"):
            problems.append(f"{name}: {status}")
        elif status != "no tests":
            judged[_package(name)]["killed" if status in ("killed", "timeout") else status] += 1
    if not names:
        problems.append("no mutant was chosen")
    for package, c in sorted(judged.items()):
        total = c["killed"] + c["survived"]
        score = 100 * c["killed"] / total
        if score < min_score:
            problems.append(
                f"{package}: {c['killed']} of {total} mutants killed ({score:.1f}%), "
                f"under {min_score:g}%"
            )
    return problems


def listed_equivalents(path: Path = EQUIVALENT) -> dict[str, str]:
    """The mutants reviewed as equivalent: name -> the line their diff adds (stripped)."""
    with path.open("rb") as f:
        return {m["name"]: m["line"] for m in tomllib.load(f).get("mutant", [])}


def equivalent(
    survivors: Collection[str], listed: dict[str, str], diff: Callable[[str], str]
) -> set[str]:
    """The ``survivors`` listed as equivalent whose diff (``diff(name)``, as ``mutmut show``
    prints it) still adds the listed line: a listed name whose mutant has changed since it was
    reviewed (renumbered by an edit of its function) is not confirmed, and stays a survivor."""
    confirmed = set()
    for name in survivors:
        line = listed.get(name)
        if line is None:
            continue
        added = {
            row[1:].strip()
            for row in diff(name).splitlines()
            if row.startswith("+") and not row.startswith("+++")
        }
        if line in added:
            confirmed.add(name)
    return confirmed


def _mutmut(command: list[str], env: dict[str, str], deadline: float | None) -> None:
    """Run mutmut until it ends or ``deadline`` (``time.monotonic()``) passes, then stop it and
    its workers: its progress on a terminal; piped (CI), its output goes to ``LOG``."""
    with contextlib.ExitStack() as stack:
        out = None
        if not sys.stdout.isatty():
            out = stack.enter_context(LOG.open("a", encoding="utf-8"))
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # its own process group: stopping it stops its workers
        )
        try:
            process.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print("mutation: stopped at the --max-minutes limit", file=sys.stderr)
            _stop(process)
        except BaseException:
            _stop(process)
            raise


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and its process group: SIGTERM, then SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _results() -> dict[str, int | None]:
    """Mutant name -> mutmut exit code, from the ``.meta`` files beside the mutated sources."""
    found: dict[str, int | None] = {}
    for meta in sorted(MUTANTS.glob("pql/**/*.py.meta")):
        found.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return found


def _names() -> list[str]:
    return list(_results())


def _package(name: str) -> str:
    """``pql.plan.cost.x_f__mutmut_3`` -> ``pql/plan``; ``pql.analyze...`` -> ``pql/analyze.py``."""
    parts = name.split(".")
    return "pql/analyze.py" if parts[1] == "analyze" else f"pql/{parts[1]}"


def _module(name: str) -> str:
    """``pql.plan.cost.xǁ_Estimatorǁjoin_rows__mutmut_4`` -> ``pql.plan.cost``."""
    return name.split(".x", 1)[0]


def _stratified(pool: list[str], size: int, rng: random.Random) -> list[str]:
    """``size`` mutants of ``pool``: each source file's share in proportion to its mutants (at
    least one each while the sample allows), the remainders to the largest fractions."""
    if size >= len(pool):
        return sorted(pool)
    by_file: dict[str, list[str]] = defaultdict(list)
    for name in pool:
        by_file[_module(name)].append(name)
    exact = {f: size * len(names) / len(pool) for f, names in by_file.items()}
    share = {f: min(len(by_file[f]), max(1, int(x))) for f, x in exact.items()}
    for f in sorted(exact, key=lambda f: exact[f] - int(exact[f]), reverse=True):
        if sum(share.values()) >= size:
            break
        if share[f] < len(by_file[f]):
            share[f] += 1
    chosen = []
    for f in sorted(by_file):  # a shuffled prefix: a larger sample holds the smaller one
        names = sorted(by_file[f])
        rng.shuffle(names)
        chosen += names[: share[f]]
    return sorted(chosen)


def _status(code: int | None) -> str:
    return "timeout" if code in TIMEOUTS else STATUS.get(code, f"suspicious (exit {code})")


def _report(
    path: Path,
    chosen: list[str] | None,
    command: str,
    seconds: float,
    args: argparse.Namespace,
    same: Collection[str] = (),
) -> None:
    results = _results()
    if chosen is not None:
        names = chosen
    elif args.report_only:  # the mutants the last run(s) gave a result
        names = sorted(n for n, code in results.items() if code is not None)
    else:
        names = sorted(results)
    by_package: dict[str, Counter[str]] = defaultdict(Counter)
    for name in names:
        status = _status(results.get(name))
        by_package[_package(name)]["equivalent" if name in same else status] += 1
    total = sum(len(_names_in(p, results)) for p in PACKAGES)
    lines = [
        "# Mutation score",
        "",
        f"Command: `{command}` (mutmut {_mutmut_version()}, Hypothesis profile "
        f"`{os.environ.get('HYPOTHESIS_PROFILE', 'mutation')}`), {seconds / 60:.0f} min "
        f"with {args.max_children} workers.",
        "",
        (
            f"A seeded random sample of {len(names)} of the {total} mutants (seed {args.seed}, "
            f"from {', '.join(args.only)}{_skipped(args)}, stratified by source file): the scores "
            "estimate the full run's."
            if chosen is not None and args.sample
            else f"Every one of the {len(names)} mutants of {', '.join(args.only)}{_skipped(args)}."
            if chosen is not None
            else f"The {len(names)} mutants with a result in the last run, of {total}."
            if args.report_only
            else f"Every one of the {total} mutants."
        ),
        "",
        "| package | mutants run | killed | survived | equivalent | timeout | no tests | score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for package in PACKAGES:
        c = by_package.get(package)
        if not c:
            continue
        killed, survived = c["killed"] + c["timeout"], c["survived"]
        judged = killed + survived
        score = f"{100 * killed / judged:.1f}%" if judged else "-"
        lines.append(
            f"| `{package}` | {sum(c.values())} | {c['killed']} | {survived} | "
            f"{c['equivalent']} | {c['timeout']} | {c['no tests']} | {score} |"
        )
    lines += [
        "",
        "Score: killed (a timeout counts as killed) / (killed + survived); a mutant no selected "
        'test reaches ("no tests") is listed apart, and so is a survivor reviewed as equivalent '
        "(benchmarks/equivalent_mutants.toml, confirmed by its diff; a chosen one confirmed "
        "before the run is not run). Survivors and equivalents are listed below with their "
        "diff; docs/testing.md says which tests were added.",
        "",
        "## Survivors",
        "",
    ]
    for name in names:
        status = _status(results.get(name))
        if status in ("survived", "no tests") or (status == "not run" and name in same):
            status = f"{status}, equivalent" if name in same else status
            lines += [f"### `{name}` ({status})", "", "```diff"]
            lines += [_diff(name), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")


def _skipped(args: argparse.Namespace) -> str:
    return f" without {', '.join(args.skip)}" if args.skip else ""


def _names_in(package: str, results: dict[str, int | None]) -> list[str]:
    return [n for n in results if _package(n) == package]


def _diff(name: str) -> str:
    shown = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True, check=False
    )
    return "\n".join(line for line in shown.stdout.splitlines()[1:] if line.strip()).strip()


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


if __name__ == "__main__":
    raise SystemExit(main())
