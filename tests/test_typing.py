"""The typed public API: py.typed and the stubs of the compiled module are
installed and agree with what the module really exports."""
import ast
import inspect
from pathlib import Path

import mcscore
import mcscore._kernels as K

PKG = Path(mcscore.__file__).resolve().parent


def _stub():
    return ast.parse((PKG / "_kernels.pyi").read_text())


def test_marker_and_stub_are_installed():
    assert (PKG / "py.typed").is_file()
    assert (PKG / "_kernels.pyi").is_file()


def test_stub_names_match_the_module():
    tree = _stub()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
    public = {n for n in dir(K) if not n.startswith("_") and n != "np"}
    assert names == public, (sorted(public - names), sorted(names - public))


def test_stub_signatures_match_the_functions():
    tree = _stub()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            stub_params = [a.arg for a in node.args.args]
            real = list(inspect.signature(getattr(K, node.name)).parameters)
            assert stub_params == real, node.name
        if isinstance(node, ast.ClassDef):
            cls = getattr(K, node.name)
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name != "__init__":
                    assert hasattr(cls, item.name), (node.name, item.name)
