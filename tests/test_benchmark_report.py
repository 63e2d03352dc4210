"""benchmarks/report.py writes its generated section into docs/performance.md, as it stands."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "performance.md"
RESULTS = REPO / "benchmarks" / "results" / "results.json"


@pytest.fixture(scope="module")
def report() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "benchmark_report", REPO / "benchmarks" / "report.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(RESULTS.read_text(encoding="utf-8"))
    return data


def test_regenerating_from_the_stored_results_leaves_the_page_as_it_is(
    report: ModuleType, results: dict[str, Any], tmp_path: Path
) -> None:
    # The page holds what the generator makes of results.json: a new run replaces exactly
    # that part, and the page stays valid for tests/test_docs.py (links, not-run marker).
    page = tmp_path / "performance.md"
    shutil.copy(PAGE, page)
    assert report.update_docs_page(page, report.render_notes(results))
    assert page.read_text(encoding="utf-8") == PAGE.read_text(encoding="utf-8")


def test_write_report_links_relative_to_the_page_and_keeps_the_hand_written_part(
    report: ModuleType, results: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "render_chart", lambda res, path: False)  # no matplotlib needed
    docs, out = tmp_path / "docs", tmp_path / "bench" / "results"
    docs.mkdir()
    out.mkdir(parents=True)
    page = docs / "performance.md"
    page.write_text(f"# Title\n\n{report.DOCS_BEGIN}\nold\n{report.DOCS_END}\n\nMine.\n")
    report.write_report(results, out / "results.md", docs / "performance.png", docs_page=page)
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"# Title\n\n{report.DOCS_BEGIN}\nMeasured ")
    assert text.endswith(f"{report.DOCS_END}\n\nMine.\n") and "\nold\n" not in text
    assert "](performance.png)" in text and "](../bench/results/results.md)" in text
    assert f"{report.NOT_RUN}\n```bash\n" in text
    assert (out / "results.md").read_text().startswith("# asyncblobdict benchmarks")


def test_a_page_without_markers_is_left_alone(
    report: ModuleType, results: dict[str, Any], tmp_path: Path
) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nNo markers.\n")
    assert not report.update_docs_page(page, report.render_notes(results))
    assert page.read_text() == "# Performance\n\nNo markers.\n"
