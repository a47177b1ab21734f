"""Packages whose names import on first use (PEP 562), so importing them loads no SDK.

`magicflow`, `flows` and `tasks` re-export names from their modules; each gets its
module ``__getattr__`` and ``__dir__`` from `lazy_exports` instead of importing every
module (and its client library) up front. The package keeps ``TYPE_CHECKING``
imports of the same names for type checkers.

Example:
    ```python
    # in a package's __init__.py
    _EXPORTS = {"ensure_namespace": "tasks.kubernetes"}
    __all__ = ["ensure_namespace"]
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
    ```
"""

import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], names: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's module ``__getattr__`` and ``__dir__`` for names imported on first use.

    Args:
        package: The package's ``__name__``.
        exports: Each exported name -> the module that defines it.
        names: The package's ``__all__``.

    Returns:
        ``(__getattr__, __dir__)``: the first imports the name's module and keeps the
        value in the package's namespace (later look-ups are plain attributes); the
        second lists the namespace and `names`.
    """
    namespace = sys.modules[package].__dict__
    listed = frozenset(names)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *listed})

    return __getattr__, __dir__
