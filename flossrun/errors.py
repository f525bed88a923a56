"""The bottom floor of the package: the configuration error and its one-line message.

Imports nothing from flossrun, so every layer (models, tasks, analyses, config, the CLI) can
raise :class:`ConfigError` through :func:`need` without importing the config pipeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ConfigError(ValueError):
    """An impossible configuration; the message is one line naming the key."""


def need(ok: bool, key: str, value: Any, allowed: str) -> None:
    """Raise ``ConfigError("key=value: allowed")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{key}={format_value(value)}: {allowed}")


def format_value(value: Any) -> str:
    """A config value on one line: lists (also OmegaConf's) as ``[a,b]``, others by ``str``."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def is_number(v: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(v, int | float) and not isinstance(v, bool)
