"""One registry type for the package's seams: models, tasks and analyses (docs/design.md §10).

A :class:`Registry` maps the names a config group accepts (``model=``, ``task=``,
``analysis=``) to an entry: the entry's config dataclass and whatever builds from it. Entries
register themselves with the :meth:`Registry.register` decorator when their module is
imported; :meth:`Registry.config` turns config fields into the checked dataclass, with the
one-line :class:`flossrun.errors.ConfigError` of the floor for an unknown name or key.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from flossrun.errors import ConfigError, need

T = TypeVar("T")


def import_modules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (its ``__path__``): each registers its entries."""
    for module in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{module.name}")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registry entry: its name, its config dataclass and what it registered (a class or a
    builder ``config -> object``)."""

    name: str
    config: type
    build: T


class Registry(Generic[T]):
    """Names of one config group (``group``) mapped to :class:`Entry` objects.

    ``default`` is the name a config without ``name`` takes.
    """

    def __init__(self, group: str, default: str) -> None:
        self.group, self.default = group, default
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config: type) -> Callable[[T], T]:
        """Decorator of a class or builder: make ``<group>=<name>`` use it with ``config``."""

        def add(target: T) -> T:
            self._entries[name] = Entry(name, config, target)
            return target

        return add

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def lookup(self, name: str) -> Entry[T]:
        """The entry of ``name``; a one-line :class:`ConfigError` naming ``<group>.name`` and
        the allowed names when there is none."""
        allowed = f"allowed: {', '.join(self.names())}"
        need(name in self._entries, f"{self.group}.name", name, allowed)
        return self._entries[name]

    def config(self, fields: Any) -> Any:
        """The config dataclass of ``fields`` (a mapping or DictConfig; ``name`` picks the
        entry, ``default`` without it), built but not checked.

        Raises :class:`ConfigError` naming the key for an unknown name or a key the entry's
        config does not have.
        """
        from omegaconf import OmegaConf

        if OmegaConf.is_config(fields):
            fields = OmegaConf.to_container(fields, resolve=True)
        fields = dict(fields)
        name = fields.get("name", self.default)
        config = self.lookup(name).config
        known = {f.name for f in dataclasses.fields(config)}
        for key in fields:
            if key not in known:
                raise ConfigError(
                    f"{self.group}.{key}: not an option of {self.group}={name} "
                    f"(allowed: {', '.join(sorted(known))})"
                )
        return config(**fields)

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests that register a throwaway entry)."""
        self._entries.pop(name, None)

    # --- the mapping view: ``name in REG``, ``REG[name]``, ``sorted(REG)``, ``REG.items()`` ----
    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> Entry[T]:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, Entry[T]]]:
        """``(name, entry)`` pairs in registration order."""
        return list(self._entries.items())
