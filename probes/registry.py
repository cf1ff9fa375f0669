"""The probe registry: the one list of probes, and what the rest of the scanner asks about them.

Every probe module registers its class with @register when it is imported, and
importing the package imports every probe module (probes/__init__.py; a test
checks that no module of the folder is left out). The plan, the receiver, the
output fields, the CLI and the report then ask the registry (or a probe it
made) what a probe is: its kind and transport are declared once, on the class,
never guessed from its name.
"""

from __future__ import annotations

import re
from typing import TypeVar

from .base import Probe, UnknownProbeError

__all__ = ["all_probes", "get_probe", "probe_class", "register"]

_REGISTRY: dict[str, type[Probe]] = {}

P = TypeVar("P", bound=type[Probe])


def register(cls: P) -> P:
    """Class decorator adding a probe to the registry (explicit, so test subclasses stay out of it)."""
    if not cls.name or not re.fullmatch(r"[a-z0-9_-]+", cls.name):
        raise ValueError(f"invalid probe name {cls.name!r}")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(f"duplicate probe name {cls.name!r}")
    if len(set(cls.fields)) != len(cls.fields):
        raise ValueError(f"probe {cls.name!r} declares duplicate fields")
    _REGISTRY[cls.name] = cls
    return cls


def all_probes() -> list[type[Probe]]:
    """All registered probe classes, sorted by name."""
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def probe_class(name: str) -> type[Probe] | None:
    """The class registered under exactly `name` (as records spell it), or None."""
    return _REGISTRY.get(name)


def get_probe(name: str, args: dict[str, str] | None = None) -> Probe:
    """Instantiate the probe called ``name`` with ``args`` (ProbeArgError on bad args)."""
    key = name.strip().lower() if isinstance(name, str) else ""
    cls = _REGISTRY.get(key)
    if cls is None:
        raise UnknownProbeError(f"unknown probe {name!r} (known: {', '.join(sorted(_REGISTRY))})")
    return cls(args)
