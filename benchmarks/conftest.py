"""Benchmarks run with ``nox -s bench`` (or ``pytest benchmarks --benchmark-only``)."""
