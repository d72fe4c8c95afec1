"""Every public name a simulator module lists in ``__all__`` exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import radical.orbit.simulator as simulator

MODULES = sorted(
    m.name for m in pkgutil.iter_modules(simulator.__path__) if not m.name.startswith("_")
)


@pytest.mark.parametrize("name", MODULES)
def test_exports_exist(name: str) -> None:
    module = importlib.import_module(f"radical.orbit.simulator.{name}")
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for item in exported:
        assert hasattr(module, item), f"{name}.{item}"
    assert sorted(set(exported)) == sorted(exported), f"{name}: duplicates in __all__"
