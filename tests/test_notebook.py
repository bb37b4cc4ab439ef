"""Notebook use: results, explanations and errors as HTML, ``to_pandas``, ``plot``, the magics
on a real IPython shell, and the tour executed top to bottom on a fresh kernel."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

import pql
from pql.demo import DemoData
from pql.extras import require
from tests.clock import TEST_NOW
from tests.compare import assert_same_frame

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "docs" / "notebooks" / "tour.ipynb"
NOW = TEST_NOW.isoformat()
SERIES = (
    "FIND COUNT(decisions.decisionId) AS denies WHERE decisions.effect = 'deny' "
    "GROUP BY decisions.rule TIMESERIES 1d SINCE 30d"
)
GROUPED = "FIND COUNT(*) AS n, SUM(receipts.cost_usd) AS cost GROUP BY receipts.region SINCE 60d"


# -- HTML ----------------------------------------------------------------------------------------


def test_result_html_has_types_count_stats_and_escapes_everything() -> None:
    df = pl.DataFrame({"<b>name</b>": ["<script>alert(1)</script>", None], "n": [1, 2]})
    html = (
        pql.Result(df, False, {"tenant": "acme", "rows_scanned": 12})
        .__class__(
            df, False, {"tenant": "a<c>me", "rows_scanned": 1234, "timings_ms": {"total": 3.5}}
        )
        ._repr_html_()
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "&lt;b&gt;name&lt;/b&gt;" in html
    assert "<small>String</small>" in html and "<small>Int64</small>" in html
    assert "2 rows" in html and "1,234 rows scanned" in html and "a&lt;c&gt;me" in html
    assert "pql-null" in html  # a null is shown as such
    assert "Truncated" not in html


def test_a_truncated_result_shows_a_banner(demo: DemoData, tenants: list[str]) -> None:
    small = pql.Engine.in_memory(limits=pql.Limits(max_rows=70))
    small.ingest("receipts", demo.receipts)
    result = small.query("FIND receipts SINCE 60d", tenant=tenants[0], now=TEST_NOW)
    assert result.truncated
    html = result._repr_html_()
    assert "pql-banner" in html and "Truncated" in html
    assert "more rows" in html  # 70 rows: the middle is elided
    assert "70 rows" in html


def test_error_html_marks_the_offending_text_with_a_caret(engine: pql.Engine) -> None:
    with pytest.raises(pql.PQLError) as caught:
        engine.query("FIND receipts WHERE status == '<x>'", tenant="acme", now=TEST_NOW)
    html = caught.value._repr_html_()
    assert "error[PQL-E001]" in html
    assert "status =<mark>=</mark> &#x27;&lt;x&gt;&#x27;" in html
    assert "\n  |                             ^</pre>" in html
    assert "<li>hint: PQL compares with a single &#x27;=&#x27;</li>" in html
    assert "Traceback" not in html


def test_explanation_html_is_the_plan_tree_with_estimates(
    engine: pql.Engine, tenants: list[str]
) -> None:
    explanation = engine.explain(SERIES, tenant=tenants[0], now=TEST_NOW, analyze=True)
    html = explanation._repr_html_()
    details = explanation.node_details()
    assert html.count("<tr>") == len(details) + 1
    assert "actual_rows" in html and "est_rows" in html
    assert "Aggregate COUNT(decisions.decisionId) AS denies BY bucket(decisions.ts, 1d)" in html
    assert "padding-left:" in html  # indented by depth
    assert f"{details[0]['est_rows']:,.0f}" in html
    assert repr(explanation) == str(explanation)


# -- pandas and plots ----------------------------------------------------------------------------


def test_to_pandas_has_the_same_rows(engine: pql.Engine, tenants: list[str]) -> None:
    result = engine.query(GROUPED, tenant=tenants[0], now=TEST_NOW)
    frame = result.to_pandas()
    assert list(frame.columns) == result.columns
    assert [tuple(r) for r in frame.itertuples(index=False)] == result.rows()


def test_a_time_series_plots_one_line_per_group(
    engine: pql.Engine, tenants: list[str], tmp_path: Path
) -> None:
    result = engine.query(SERIES, tenant=tenants[0], now=TEST_NOW)
    figure = result.plot(title="denies")
    (ax,) = figure.axes
    groups = result.df["rule"].n_unique()
    assert len(ax.get_lines()) == groups
    assert all(len(line.get_xdata()) == 31 for line in ax.get_lines())  # no gaps
    figure.savefig(tmp_path / "series.png")
    figure.savefig(tmp_path / "series.svg")
    assert (tmp_path / "series.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in (tmp_path / "series.svg").read_bytes()[:500]


def test_grouped_aggregates_plot_as_bars(engine: pql.Engine, tenants: list[str]) -> None:
    result = engine.query(GROUPED, tenant=tenants[0], now=TEST_NOW)
    figure = result.plot()
    assert len(figure.axes) == 2  # one panel per aggregate
    for ax, name in zip(figure.axes, ["n", "cost"], strict=True):
        assert len(ax.patches) == result.df.height
        assert ax.get_ylabel() == name
    labels = [t.get_text() for t in figure.axes[-1].get_xticklabels()]  # the panels share them
    assert labels == result.df["region"].to_list()


@pytest.mark.parametrize(
    "text",
    [
        "FIND receipts SINCE 7d",
        "FIND MIN(receipts.ts) GROUP BY receipts.region SINCE 7d",
        "FIND COUNT(*) WHERE receipts.status = 'no-such' GROUP BY receipts.region SINCE 7d",
    ],
)
def test_shapes_that_cannot_be_plotted(engine: pql.Engine, tenants: list[str], text: str) -> None:
    result = engine.query(text, tenant=tenants[0], now=TEST_NOW)
    with pytest.raises(pql.InputError) as caught:
        result.plot()
    assert caught.value.code == "PQL-E153"
    assert caught.value.hints


def test_a_missing_optional_package_is_a_clear_error() -> None:
    """In a fresh interpreter where matplotlib cannot be imported, plot() says what to install."""
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['pandas'] = None\n"
        "import polars as pl, pql\n"
        "r = pql.Result(pl.DataFrame({'region': ['a'], 'n': [1]}))\n"
        "for call in (r.plot, r.to_pandas):\n"
        "    try:\n"
        "        call()\n"
        "    except pql.InputError as e:\n"
        "        print(e.code, e.hints[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "PQL-E152 pip install 'pql[notebook]' (or pip install matplotlib)",
        "PQL-E152 pip install 'pql[notebook]' (or pip install pandas)",
    ]
    with pytest.raises(pql.InputError, match="no_such_package"):
        require("no_such_package", "this")


def test_the_core_imports_no_notebook_package() -> None:
    code = (
        "import sys, pql\n"
        "e = pql.Engine.in_memory(); e.query('FIND receipts', tenant='acme')\n"
        "print(sorted(m for m in ('IPython', 'matplotlib', 'pandas') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- magics --------------------------------------------------------------------------------------


@pytest.fixture
def shell(engine: pql.Engine) -> Any:
    from IPython.core.interactiveshell import InteractiveShell

    InteractiveShell.clear_instance()
    ipython = InteractiveShell.instance()
    ipython.user_ns["engine"] = engine
    ipython.run_line_magic("load_ext", "pql")
    yield ipython
    InteractiveShell.clear_instance()


def test_cell_magic_returns_the_result_and_binds_it(
    shell: Any, engine: pql.Engine, tenants: list[str]
) -> None:
    shell.run_line_magic("pql_connect", f"engine --tenant {tenants[0]}")
    result = shell.run_cell_magic("pql", f"--now {NOW} -o denies", SERIES)
    assert isinstance(result, pql.Result)
    assert shell.user_ns["denies"] is result
    expected = engine.query(SERIES, tenant=tenants[0], now=TEST_NOW)
    assert result.rows() == expected.rows()
    other = shell.run_cell_magic("pql", f"--tenant {tenants[1]} --now {NOW}", SERIES)
    assert other.rows() == engine.query(SERIES, tenant=tenants[1], now=TEST_NOW).rows()


def test_line_magic_binds_notebook_values_as_parameters(
    shell: Any, engine: pql.Engine, tenants: list[str]
) -> None:
    shell.run_line_magic("pql_connect", f"engine --tenant {tenants[0]}")
    query = "FIND COUNT(*) AS n WHERE receipts.status = $status AND latency_ms > $slow SINCE 30d"
    shell.user_ns.update(status="error", slow=100)
    got = shell.run_cell(f"%pql --now {NOW} {query}").result
    expected = engine.query(
        query, tenant=tenants[0], now=TEST_NOW, params={"status": "error", "slow": 100}
    )
    assert got.rows() == expected.rows() and expected.rows()[0][0] > 0
    # A value that would change the query if it were pasted into the text is just a string.
    shell.user_ns["status"] = "error' OR status != 'x"
    got = shell.run_cell(f"%pql --now {NOW} {query}").result
    assert got.rows() == [(0,)]


def test_errors_are_shown_rendered_not_raised(
    shell: Any, tenants: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert shell.run_cell_magic("pql", f"--now {NOW}", SERIES) is None
    assert "PQL-E155" in capsys.readouterr().out
    shell.run_line_magic("pql_connect", f"engine --tenant {tenants[0]}")
    cell = shell.run_cell(f"%pql --now {NOW} FIND receipts WHERE status == 'x'")
    assert cell.success and cell.result is None
    out = capsys.readouterr().out
    assert "PQL-E001" in out and "Traceback" not in out
    shell.run_cell(f"%pql --now {NOW} FIND receipts WHERE status = $nowhere_defined")
    assert "PQL-E156" in capsys.readouterr().out
    shell.run_line_magic("pql_connect", "no/such/dir --tenant acme")
    assert "PQL-E154" in capsys.readouterr().out


def test_connect_to_a_data_directory(
    shell: Any, demo: DemoData, tenants: list[str], tmp_path: Path
) -> None:
    lake = pql.Engine(tmp_path / "lake")
    lake.ingest("receipts", demo.receipts)
    shell.run_line_magic("pql_connect", f"{tmp_path / 'lake'} --tenant {tenants[0]}")
    result = shell.run_cell_magic("pql", f"--now {NOW}", GROUPED)
    # Either engine may answer from the rollup (a tenant read from files does) or from the
    # rows, depending on whether its index has loaded yet: SUM of floats adds up in another
    # order, so compare to 1e-9 relative (docs/pql/ROLLUPS.md).
    assert_same_frame(result.df, lake.query(GROUPED, tenant=tenants[0], now=TEST_NOW).df, GROUPED)


# -- the tour ------------------------------------------------------------------------------------


def test_the_tour_runs_top_to_bottom(tmp_path: Path) -> None:
    """Executed on a fresh kernel; every cell's output is what the tour promises."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(TOUR, as_version=4)
    NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    outputs = [c.outputs for c in code]
    assert not [o for cell in outputs for o in cell if o.output_type == "error"]

    def data(cell: list[Any], kind: str) -> list[str]:
        return [o["data"][kind] for o in cell if kind in o.get("data", {})]

    def cell_with(text: str) -> list[Any]:
        return next(c.outputs for c in code if text in c.source)

    series = data(cell_with("-o denies"), "text/html")
    assert series and "<th>bucket<br>" in series[0] and "<th>rule<br>" in series[0]
    assert data(cell_with("GROUP BY receipts.workflow SINCE 30d"), "text/html")
    assert data(cell_with("cost = %pql"), "text/html")
    assert data(cell_with("cost.to_pandas()"), "text/html")
    assert "est_rows" in data(cell_with("engine.explain("), "text/html")[0]
    error = data(cell_with("status == 'error'"), "text/html")[0]
    assert "error[PQL-E001]" in error and "<mark>=</mark>" in error and "hint:" in error
    refused = data(cell_with("TIMESERIES 1h SINCE 180d"), "text/html")[0]
    assert "PQL-S012" in refused and "use TIMESERIES 6h for 180d" in refused
    assert "<th>workflow<br>" in data(cell_with("engine.run_saved("), "text/html")[0]
    assert data(cell_with("cost.plot("), "image/png")

    (png,) = data(cell_with("denies.plot("), "image/png")
    image = base64.b64decode(png)
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 10_000
    (tmp_path / "tour-denies.png").write_bytes(image)
    if os.environ.get("PQL_TOUR_PNG"):  # CI keeps the chart as an artifact
        Path(os.environ["PQL_TOUR_PNG"]).write_bytes(image)
