"""The docstring fragments (mcscore._docs): slots are filled at import, so
every docstring users see holds the full text and no ``%(name)s`` slot."""
import importlib
import inspect
import pkgutil
import re

import pytest

import mcscore
from mcscore import _docs

SLOT = re.compile(r"%\(\w+\)s")


def _all_docstrings():
    """(qualified name, docstring) of every module-level function and class
    of every mcscore module, and of the classes' own methods."""
    for info in pkgutil.walk_packages(mcscore.__path__, "mcscore."):
        try:
            mod = importlib.import_module(info.name)
        except ImportError:      # the torch / jax bridges without their framework
            continue
        for name, obj in vars(mod).items():
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            yield f"{info.name}.{name}", obj.__doc__
            if inspect.isclass(obj):
                for mname, member in vars(obj).items():
                    if isinstance(member, (staticmethod, classmethod)):
                        member = member.__func__
                    if inspect.isfunction(member):
                        yield f"{info.name}.{name}.{mname}", member.__doc__


def test_no_docstring_keeps_an_unfilled_slot():
    left = sorted(q for q, doc in _all_docstrings() if doc and SLOT.search(doc))
    assert not left, left


def test_filled_docstrings_show_the_shared_sections():
    # a family's Raises (inserted by raises_bad_parameters), a policy's
    # parameter and Examples set-up, a payoff's sections
    doc = mcscore.Gumbel.__doc__
    assert "Raises\n    ------\n    ValueError\n        A non-finite ``loc``" in doc
    assert "TypeError\n        Values that are not real numbers." in doc
    assert doc.index("Raises") < doc.index("Examples")
    doc = mcscore.rl.SoftmaxPolicy.sample.__doc__
    assert "        features : array_like, shape ``(*batch, n_features)``\n" \
           "            The states' features.\n" in doc
    assert "        >>> pol = mc.rl.SoftmaxPolicy(n_features=3, n_actions=2)\n" in doc
    doc = mcscore.finance.basket_put.__doc__
    assert "    weights : array_like, shape (assets,)\n        Finite weights" in doc
    assert "    Returns\n    -------\n    Payoff\n" in doc


def test_fill_indents_a_line_slot_and_inlines_an_inline_one():
    doc = "Summary.\n\n    Parameters\n    ----------\n    %(p)s\n\n    Text %(w)s here.\n"
    out = _docs.fill(doc, p="x : int\n    The x.", w="two\nwords")
    assert out == ("Summary.\n\n    Parameters\n    ----------\n    x : int\n        The x.\n"
                   "\n    Text two words here.\n")


def test_fill_nests_fragments_and_keeps_relative_indentation():
    out = _docs.fill("  %(outer)s", outer="A\n%(inner)s", inner="b\n    c")
    assert out == "  A\n  b\n      c"


def test_fill_names_a_missing_fragment():
    with pytest.raises(KeyError, match="nothing_here"):
        _docs.fill("%(nothing_here)s")


def test_fill_leaves_a_missing_docstring_alone():
    assert _docs.fill(None) is None


def test_insert_section_goes_before_examples_or_at_the_end():
    doc = "S.\n\n    Examples\n    --------\n    >>> 1\n    1\n"
    out = _docs.insert_section(doc, "Raises", "ValueError\n    Bad.")
    assert out == ("S.\n\n    Raises\n    ------\n    ValueError\n        Bad.\n\n"
                   "    Examples\n    --------\n    >>> 1\n    1\n")
    assert _docs.insert_section("S.", "Notes", "N.") == "S.\n\nNotes\n-----\nN.\n"


def test_filldoc_decorates_functions_and_classes():
    @_docs.filldoc(what="the thing")
    def f():
        """Do %(what)s."""

    @_docs.raises_bad_parameters("A bad ``x``")
    class C:
        """C(x).

        Examples
        --------
        >>> 1
        1
        """

    assert f.__doc__ == "Do the thing."
    assert "ValueError\n            A bad ``x`` (the message names" in C.__doc__
