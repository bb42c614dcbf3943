"""What every benchmark shares: where results go, and how they are printed.

Each benchmark returns rows (dicts); `record` writes them with the machine's
description to `bench/results/<name>.json` and prints them as a table.
Benchmarks compare things side by side in one run, because a shared 2-core
machine is noisy: ratios mean more than absolute seconds.
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Dict, List

from gemstone import paths

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REAL_DATA = paths.REAL_DATA  # the real photos (GEMSTONE_REAL_DATA, else beside the checkout)


def machine() -> Dict[str, object]:
    return {"cores": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def format_table(rows: List[Dict[str, object]]) -> str:
    """A Markdown table (so it can be pasted into README.md as measured)."""
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(k for row in rows for k in row))

    def cell(value):
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def record(name: str, rows: List[Dict[str, object]], notes: str = "") -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), "notes": notes, "rows": rows}, indent=1))
    print(f"\n## {name}\n")
    if notes:
        print(notes + "\n")
    print(format_table(rows))
    print(f"\n(written to {path})")
    return path
