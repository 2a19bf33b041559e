"""Expert success rate per task of a suite definition (``sim/suites/*.yaml``).

    .venv/bin/python benchmarks/expert_success.py [--suite sim/suites/standard.yaml] [--workers 2]

Every episode of every tier is counted (success or not); exits 1 when a task misses its bar.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from robostack.sim.parallel import generate_episodes
from robostack.utils.table import format_markdown, format_table


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="sim/suites/standard.yaml")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quality", default="expert")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    suite = yaml.safe_load(Path(args.suite).read_text())
    rows, result = [], {"suite": suite["name"], "quality": args.quality, "tasks": {}}
    ok = True
    for task, cfg in suite["tasks"].items():
        seeds = list(range(suite.get("seed", 0), suite.get("seed", 0) + cfg["episodes"]))
        t0 = time.perf_counter()
        eps = list(
            tqdm(
                generate_episodes(task, seeds, args.quality, args.workers),
                total=len(seeds),
                desc=task,
                leave=False,
            )
        )
        secs = time.perf_counter() - t0
        rate = float(np.mean([e.success for e in eps]))
        steps = sum(e.length for e in eps)
        passed = rate >= cfg["min_success"]
        ok &= passed
        rows.append(
            (
                task,
                len(eps),
                f"{100 * rate:.1f}%",
                f">= {100 * cfg['min_success']:.0f}%",
                "pass" if passed else "FAIL",
                f"{np.mean([e.length for e in eps]):.1f}",
                f"{steps / secs:,.0f}",
            )
        )
        result["tasks"][task] = {
            "episodes": len(eps),
            "success": rate,
            "bar": cfg["min_success"],
            "steps_s": steps / secs,
        }
    headers = ["task", "episodes", "success", "bar", "", "mean length", "env steps/s"]
    print(format_table(headers, rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"expert_success_{suite['name']}"
    (out / f"{name}.json").write_text(json.dumps(result, indent=1))
    (out / f"{name}.md").write_text(
        f"# Expert success, suite `{suite['name']}` ({time.strftime('%Y-%m-%d')}, {args.workers} workers)\n\n"
        f"Command: `.venv/bin/python benchmarks/expert_success.py --suite {args.suite} --workers {args.workers}`\n\n"
        + format_markdown(headers, rows)
        + "\n"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
