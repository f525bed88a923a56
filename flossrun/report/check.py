"""Check a run's ``report:`` node before any compute (docs/design.md §8): every figure, summary
and rank test it names is one the report has, and every config key it names is a key of the
composed config. A typo in a preset then fails in one line at the start, not as a note after
the sweep has run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from flossrun.errors import need
from flossrun.report.claims import RANK_TESTS, SUMMARIES
from flossrun.report.conditions import as_keys
from flossrun.report.figures import FIGURES

KEY_LISTS = ("grid", "condition", "x")  # report keys whose values are config keys


def check_report_node(node: Mapping[str, Any] | None, config_keys: Collection[str]) -> None:
    """Raise :class:`flossrun.errors.ConfigError` (one line naming the key and what it may be)
    on the first name in ``node`` the report does not know; ``config_keys``: the dotted keys
    of the composed config (``task.delay``, ...)."""
    if not node:
        return
    need(isinstance(node, Mapping), "report", node, "must be a mapping (docs/design.md §8)")
    for name in as_keys(node.get("figures")):
        need(name in FIGURES, "report.figures", name, f"allowed: {', '.join(FIGURES)}")
    if node.get("summary") is not None:
        summary = node["summary"]
        need(
            str(summary) in SUMMARIES, "report.summary", summary, f"allowed: {', '.join(SUMMARIES)}"
        )
    keys = {f"report.{k}": as_keys(node.get(k)) for k in KEY_LISTS}
    claim = node.get("claim") or {}
    need(isinstance(claim, Mapping), "report.claim", claim, "must be a mapping: number, text, …")
    if claim.get("ranks") is not None:
        ranks = claim["ranks"]
        need(
            str(ranks) in RANK_TESTS,
            "report.claim.ranks",
            ranks,
            f"allowed: {', '.join(RANK_TESTS)}",
        )
    keys["report.claim.compare"] = as_keys(claim.get("compare"))
    for where, names in keys.items():
        for key in names:
            need(key in config_keys, where, key, "not a key of the config (e.g. task.delay)")
