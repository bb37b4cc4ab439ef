"""Execution: compile a plan to a lazy Polars query, then run it under limits."""

from pql.execute.compile import Compiled, compile_plan
from pql.execute.run import run

__all__ = ["Compiled", "compile_plan", "run"]
