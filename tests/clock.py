"""The suite's one clock; see ``_test_now``."""

from __future__ import annotations

import os
from datetime import UTC, datetime


def _test_now() -> datetime:
    """The one clock of the suite: ``PQL_TEST_NOW`` (ISO-8601) or a fixed default.

    No test may depend on the date it runs. Every fixture that needs a "now" takes this one, and
    the wall clock itself is moved here (and keeps ticking) for the duration of each test, so code
    that reads ``datetime.now`` sees the same day as the fixtures. ``.ci/run`` runs the whole suite
    on a leap day and the tests marked ``clock`` again at the turn of a year and just before
    midnight; ``nox -s clock`` runs those tests at all three dates.
    """
    text = os.environ.get("PQL_TEST_NOW", "2026-11-27T12:00:00+00:00").replace("Z", "+00:00")
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


TEST_NOW = _test_now()
