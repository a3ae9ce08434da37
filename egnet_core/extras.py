"""Optional packages: each belongs to an extra of the distribution, and a missing one is its own error."""

from __future__ import annotations

import importlib
from types import ModuleType

INSTALL = "pip install -e '.[{extra}]'"


class MissingExtra(ImportError):
    """``package`` is not installed; ``extra`` is the distribution extra that brings it."""

    def __init__(self, package: str, extra: str, purpose: str, hint: str = ""):
        self.package, self.extra, self.purpose = package, extra, purpose
        super().__init__(f"{purpose} needs the {package!r} package, which is not installed; install the {extra!r} "
                         f"extra: {INSTALL.format(extra=extra)}{hint}", name=package)


def require(*modules: str, extra: str, purpose: str, hint: str = "") -> ModuleType:
    """Import ``modules`` and return the first; raise :class:`MissingExtra` naming ``extra`` if one is missing."""
    imported = []
    for name in modules:
        try:
            imported.append(importlib.import_module(name))
        except ImportError as error:
            raise MissingExtra(error.name or name, extra, purpose, hint) from None
    return imported[0]
