"""The ``compose`` entries of a bench suite (``configs/bench/gpc.yaml``): after the suite's runs have trained the
parents, each entry runs GPC's weight search over named runs (selection seeds) and confirms the chosen weights
against every parent on the test seeds; the report gathers each entry's test table and plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from robostack.algos.gpc_search import SEARCH_JSON, SearchConfig, run_search, tables
from robostack.errors import RobostackError
from robostack.utils.table import format_markdown


def run_compositions(
    entries: list[dict[str, Any]], out_dir: Path, workers: int, only: list[str] | None = None
) -> list[dict[str, Any]]:
    reports = []
    for entry in entries:
        folder = out_dir / "compose" / entry["name"]
        if only and entry["name"] not in only and not (folder / SEARCH_JSON).is_file():
            continue
        if (folder / SEARCH_JSON).is_file():  # a finished search is a result; rerun by deleting its folder
            print(f"\n== {entry['name']}: done before, reading {folder / SEARCH_JSON}")
            reports.append({"name": entry["name"], **json.loads((folder / SEARCH_JSON).read_text())})
            continue
        parents = [out_dir / "runs" / name for name in entry["parents"]]
        missing = [str(p) for p in parents if not (p / "checkpoints").is_dir()]
        if missing:
            raise RobostackError(
                f"compose entry {entry['name']}: parent run(s) not trained: {', '.join(missing)}"
            )
        if folder.exists():  # an interrupted search: start it again
            import shutil

            shutil.rmtree(folder)
        print(f"\n== {entry['name']}: GPC weight search over {', '.join(entry['parents'])}")
        cfg = SearchConfig(
            policies=[str(p) for p in parents],
            task=entry["task"],
            grid=float(entry.get("grid", 0.1)),
            episodes=int(entry.get("episodes", 50)),
            test_episodes=int(entry.get("test_episodes", 200)),
            workers=int(entry.get("workers", workers)),
            out=str(folder),
            n_action_steps=entry.get("n_action_steps"),
            num_steps=int(entry.get("num_steps", 0)),
        )
        report = run_search(cfg)
        print(tables(report))
        reports.append({"name": entry["name"], **report})
    return reports


def write_gpc_report(reports: list[dict[str, Any]], out_dir: Path) -> Path:
    """``compose.md``: per entry, each parent and the chosen composite on the test seeds, with the verdict."""
    rows = []
    for r in reports:
        for t in r["test"]:
            lo, hi = t["ci95"]
            rows.append(
                (
                    r["name"],
                    t["name"],
                    f"{100 * t['success_rate']:.1f}% ({100 * lo:.0f}-{100 * hi:.0f})",
                    t["episodes"],
                    f"{t['rms_jerk']:.3f}",
                    f"{t['latency_p50_ms']:.1f}",
                )
            )
    text = "# GPC suite: parents and chosen composites on the test seeds\n\n" + format_markdown(
        ["entry", "policy", "test success (95% CI)", "episodes", "jerk", "chunk p50 ms"], rows
    )
    text += "\n\n" + "\n".join(
        f"- {r['name']}: weights {r['chosen']} chosen on selection seeds {r['search_seeds']}; {r['verdict']} "
        f"(search {r['search_seconds']:.0f} s, test {r['test_seconds']:.0f} s; plot compose/{r['name']}/search.png)"
        for r in reports
    )
    path = out_dir / "compose.md"
    path.write_text(text + "\n")
    return path
