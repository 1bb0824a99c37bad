"""A check shared by the PyTorch and JAX bridge tests."""
import importlib
import sys

import pytest


def assert_missing_framework_names_the_extra(monkeypatch, name):
    """With `name` (torch or jax) not importable, importing mcscore.<name>
    raises an ImportError naming the extra mcscore[<name>].  The framework's
    import is made to fail at the bridge, not by sys.modules[name] = None:
    SciPy's array-API helpers read sys.modules["torch"] and break on None."""
    import mcscore._bridge as bridge

    real = bridge.importlib.import_module

    def unavailable(module, *args):
        if module.split(".")[0] == name:
            raise ImportError(f"No module named {module!r}")
        return real(module, *args)

    monkeypatch.setattr(bridge.importlib, "import_module", unavailable)
    monkeypatch.delitem(sys.modules, f"mcscore.{name}", raising=False)
    with pytest.raises(ImportError, match=rf"mcscore\[{name}\]"):
        importlib.import_module(f"mcscore.{name}")
    monkeypatch.delitem(sys.modules, f"mcscore.{name}", raising=False)
