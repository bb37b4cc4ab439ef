"""Developer sessions: ``nox -s tests lint typecheck demo bench mutation``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"

SOURCES = ["pql", "tests", "benchmarks", "noxfile.py"]
# the test files spread over the cores, each in one process (its fixtures built once)
PYTEST = ["python", "-m", "pytest", "-n", "auto", "--dist", "loadfile"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (differential, property, golden, CLI)."""
    session.install("-e", ".[test]")
    session.run(*PYTEST, *session.posargs)


@nox.session
def clock(session: nox.Session) -> None:
    """The tests that read the suite's clock, at several fixed dates (none may depend on today)."""
    session.install("-e", ".[test]")
    for moment in ("2028-02-29T00:00:00Z", "2026-12-31T23:59:59.999999Z", "2027-07-04T06:30:00Z"):
        session.run(*PYTEST, "-m", "clock", env={"PQL_TEST_NOW": moment})


@nox.session
def nightly(session: nox.Session) -> None:
    """Long property runs: thousands of generated queries and hostile inputs."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs, env={"HYPOTHESIS_PROFILE": "nightly"})


@nox.session
def abuse(session: nox.Session) -> None:
    """The abuse suite at full size: 100,000 generated hostile inputs (tests/test_abuse.py)."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/test_abuse.py",
        "-s",
        *session.posargs,
        env={"PQL_ABUSE_EXAMPLES": "100000"},
    )


@nox.session
def mutation(session: nox.Session) -> None:
    """Every mutant of the query pipeline (nightly; hours on two cores). Report:
    benchmarks/results/mutation.md. ``nox -s mutation -- --sample 200`` runs a seeded sample."""
    session.install("-e", ".[mutation]")
    session.run("python", "-m", "benchmarks.mutation", *session.posargs)


@nox.session(name="mutation-sample")
def mutation_sample(session: nox.Session) -> None:
    """A seeded sample of mutants of pql/plan and pql/execute, stratified by file (tens of
    minutes; hours on a loaded machine)."""
    session.install("-e", ".[mutation]")
    session.run(
        "python",
        "-m",
        "benchmarks.mutation",
        "--sample",
        "150",
        "--only",
        "pql/plan",
        "pql/execute",
        "--skip",
        "pql/execute/spark",  # killed only by tests/test_spark.py, which starts Spark: nightly
        "--min-score",
        "90",  # exit 1 when a package scores under 90% or a chosen mutant has no result
        *session.posargs,
    )


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """Generate demo data and answer example queries."""
    session.install("-e", ".")
    session.run("pql", "demo", *(session.posargs or ["--data", "pql-demo-data"]))


@nox.session
def bench(session: nox.Session) -> None:
    """Micro-benchmarks and the load harness; numbers go to benchmarks/results/."""
    session.install("-e", ".[bench]")
    session.run(
        "python",
        "-m",
        "pytest",
        "benchmarks",
        "--benchmark-only",
        "--benchmark-json=benchmarks/results/micro.json",
        "-p",
        "no:cacheprovider",
    )
    session.run("python", "-m", "benchmarks.harness", *session.posargs)
