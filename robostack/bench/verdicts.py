"""How suite reports word a success rate and a comparison: a rate with its interval, and whether intervals separate."""

from __future__ import annotations

from typing import Any


def pct(r: dict[str, Any]) -> str:
    """``{"success_rate", "ci95"}`` as "84.0% (78-88)"."""
    lo, hi = r["ci95"]
    return f"{100 * r['success_rate']:.1f}% ({100 * lo:.0f}-{100 * hi:.0f})"


def separation(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Where ``a`` stands against ``b``; "above"/"below" only where the 95% intervals do not overlap."""
    if a["ci95"][0] > b["ci95"][1]:
        return "above (intervals separate)"
    if a["ci95"][1] < b["ci95"][0]:
        return "below (intervals separate)"
    return "no separation (intervals overlap)"
