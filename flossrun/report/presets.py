"""What a preset tells the report (docs/design.md §8): the ``report:`` node of
``configs/experiment/<preset>.yaml``, read from each run folder's recorded config, the keys an
old run did not record from its preset file; :func:`presets` lists the preset files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import yaml

from flossrun.config import CONFIG_DIR

PRESET_DIR = CONFIG_DIR / "experiment"


@dataclass(frozen=True)
class Claim:
    """A preset's ``report.claim``: the claim it tests and which comparisons test it."""

    number: str  # claim number of docs/design.md §1
    text: str  # the claim in one line
    compare: str | None = None  # config key whose conditions are compared by success rate
    pairs: tuple[tuple[str, str], ...] = ()  # (a, b) values compared; () = each vs the lowest
    ranks: str | None = None  # rank test of a claim measured by medians (claims.RANK_TESTS)

    @classmethod
    def of(cls, node: dict[str, Any]) -> Claim | None:
        """The claim of a ``report:`` node; ``None`` for a preset without one."""
        claim = node.get("claim")
        if not isinstance(claim, dict) or claim.get("number") is None:
            return None
        pairs = tuple((str(a), str(b)) for a, b in claim.get("pairs") or ())
        compare, ranks = claim.get("compare"), claim.get("ranks")
        return cls(str(claim["number"]), str(claim.get("text", "")), compare, pairs, ranks)


def preset_report(name: str) -> dict[str, Any]:
    """The ``report:`` node of the preset file ``name`` (``{}`` without one)."""
    try:
        node = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    report = node.get("report") if isinstance(node, dict) else None
    return report if isinstance(report, dict) else {}


def with_preset(recorded: dict[str, Any], name: str) -> dict[str, Any]:
    """A run's recorded ``report:`` node with the keys it lacks from the preset file ``name``."""
    return {**preset_report(name), **recorded}


def presets() -> list[str]:
    """Every preset of ``configs/experiment/``, by ``report.order`` (presets without one last,
    by name)."""
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    return sorted(names, key=lambda name: preset_report(name).get("order", math.inf))
