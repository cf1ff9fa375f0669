"""The README's "Measured" tables come from the committed results in docs/bench/: no drift."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_tables", ROOT / "scripts" / "bench_tables.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_tables_are_the_committed_results() -> None:
    t = _tables()
    text = t.README.read_text()
    assert "<!-- bench:" in text, "the README lost its generated blocks"
    assert t.render_readme(text, t.DOCS) == text, (
        "README differs from docs/bench: scripts/bench_tables.py --readme"
    )


def test_summary_leaves_out_failed_and_hung_runs() -> None:
    t = _tables()
    hung, failed = {"wall_s": 99.0, "invalid": "hung"}, {"error": "boom"}
    runs = [
        {"wall_s": 2.0, "banners": 10},
        {"wall_s": 4.0, "banners": 12},
        hung,
        failed,
        {"wall_s": 3.0, "banners": 11},
    ]
    s = t.summarize(runs, ["wall_s", "banners", "absent"])
    assert s["wall_s"] == {"median": 3.0, "min": 2.0, "max": 4.0, "n": 3}
    assert s["banners"] == {"median": 11, "min": 10, "max": 12, "n": 3}
    assert s["absent"]["median"] is None
    assert t.cell(s, "wall_s") == "3.00 (2.00–4.00)"
    assert t.of(s, "banners", 12) == "11 (10–12) of 12"


def test_a_table_says_where_it_comes_from(tmp_path: Path) -> None:
    t = _tables()
    res = {
        "date": "2026-01-01T00:00:00Z",
        "runs_per_figure": 3,
        "load": {"before": {"loadavg": [0.5, 0, 0]}, "after": {"loadavg": [1.5, 0, 0]}},
        "ground_truth": {"probes": 1000},
        "rows": [{"label": "x", "summary": t.summarize([{"send_pps": 5e5, "delivered_pct": 100.0}] * 3,
                                                       ["send_pps", "delivered_pct"])}],
    }  # fmt: skip
    (tmp_path / "syn-sink.json").write_text(json.dumps(res))
    text = "a\n<!-- bench:syn-sink -->\nstale\n<!-- /bench:syn-sink -->\nb\n"
    out = t.render_readme(text, tmp_path)
    assert "stale" not in out and out.startswith("a\n") and out.endswith("b\n")
    assert "syn-sink.json` (2026-01-01T00:00:00Z, 3 runs per figure" in out
    assert "| x | 500k | 100.00 % |" in out
