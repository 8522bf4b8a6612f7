"""Lazy re-exports (PEP 562) for kanlab and its packages.

A package's public names are the imports in its `if TYPE_CHECKING:` block: a type checker reads
them there, and `lazy_names` reads them from the package's source the first time a name is used.
So importing a package loads none of its modules: `import kanlab` and the `kanlab` command start
without torch, matplotlib, sympy, Dask or Ray, and one package never drags in its neighbours.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (tens of ms)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path
    from typing import Any


def declared(source: str | Path) -> dict[str, str]:
    """{name: module} of the `from module import name` lines under `if TYPE_CHECKING:` in a file."""
    import ast

    with open(source) as file:
        tree = ast.parse(file.read())
    homes = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                if isinstance(imp, ast.ImportFrom) and imp.module and imp.module.startswith("kanlab"):
                    homes.update({a.asname or a.name: imp.module for a in imp.names})
    return homes


def lazy_names(package: str, homes: Mapping[str, str] | None = None
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of a package whose public names load on first use.

    Args:
        package: the package's __name__.
        homes: public name -> the module that defines it (default: read by `declared` from the
            package's own `if TYPE_CHECKING:` imports, limited to its __all__).
    Returns:
        (__getattr__, __dir__) to assign at the package's top level.
    """
    namespace = sys.modules[package].__dict__
    table: dict[str, str] = {}

    def homes_() -> Mapping[str, str]:
        if homes is not None:
            return homes
        if not table:
            public = set(namespace.get("__all__", ()))
            table.update({k: v for k, v in declared(namespace["__file__"]).items() if k in public})
        return table

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module hook's own name
        home = homes_().get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if home == package:  # `from kanlab import plot`: a submodule
            value = importlib.import_module(f"{package}.{name}")
        else:
            value = getattr(importlib.import_module(home), name)
        namespace[name] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*namespace, *homes_()})

    return __getattr__, __dir__
