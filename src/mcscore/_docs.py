"""Docstring fragments shared by many public names, written once.

A docstring names a fragment by a slot ``%(name)s``.  A slot alone on its
line is replaced by the fragment with every line indented as the slot is
(so a fragment may hold whole numpydoc entries or sections); a slot inside
a line is replaced by the fragment's text on one line.  Fragments may name
other fragments.  The filling happens once, when the object is defined
(:func:`filldoc`) or at the end of its module (:func:`fill_module`, with
the module's own fragments and :data:`FRAGMENTS`), so ``obj.__doc__`` --
what ``help``, Sphinx and the doctests read -- holds the full text.

:func:`raises_bad_parameters` writes a family's Raises section: its own
ValueError cases and the text every family's constructor check shares.
"""
from __future__ import annotations

import inspect
import re
import textwrap
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_SLOT = re.compile(r"^(?P<indent>[ ]*)%\((?P<line>\w+)\)s[ ]*$|%\((?P<inline>\w+)\)s", re.M)

#: Fragments every docstring may name.
FRAGMENTS: dict[str, str] = {
    "rng": """
        rng : None, int, SeedSequence or Generator
            The randomness.""",
    "n_episodes_param": """
        n : int
            The number of episodes (>= 1).""",
    "torch_import": """
        >>> import numpy as np
        >>> import pytest
        >>> torch = pytest.importorskip("torch")
        >>> import mcscore as mc""",
    # the categorical families
    "probs_logits": """
        probs : array_like, optional
            Non-negative weights of the K categories on the last axis (need not sum to 1).
        logits : array_like, optional
            Unnormalised log-probabilities; give exactly one of ``probs`` and ``logits``.""",
    "relaxation_returns": """
        Returns
        -------
        tuple
            ``(W, K, theta, probs, conversion, cv, cvs)``: the sizes W and K
            of the kernels' layout (K = 1: binary), the logit-space parameters and the
            normalised probabilities, then the code and factors that convert
            a logit gradient to the parameter as passed.""",
}


def fill(doc: str | None, **fragments: str) -> str | None:
    """``doc`` with its slots filled from ``fragments`` and :data:`FRAGMENTS`.

    Raises ``KeyError`` naming a slot that has no fragment."""
    if doc is None:
        return None
    table = {**FRAGMENTS, **fragments}

    def text(name: str) -> str:
        if name not in table:
            raise KeyError(f"docstring slot %({name})s has no fragment")
        return fill(textwrap.dedent(table[name]).strip("\n"), **fragments) or ""

    def sub(m: re.Match[str]) -> str:
        if m.group("inline"):
            return " ".join(text(m.group("inline")).splitlines())
        pad = m.group("indent")
        return "\n".join(pad + ln if ln else ln for ln in text(m.group("line")).splitlines())

    return _SLOT.sub(sub, doc)


def filldoc(**fragments: str) -> Callable[[T], T]:
    """Decorator: fill the slots of a function's or class's docstring."""
    def deco(obj: T) -> T:
        target: Any = obj.__func__ if isinstance(obj, (staticmethod, classmethod)) else obj
        target.__doc__ = fill(target.__doc__, **fragments)
        return obj
    return deco


_EXAMPLES = re.compile(r"^(?P<indent>[ ]*)Examples\n(?P=indent)-{3,}[ ]*$", re.M)


def insert_section(doc: str | None, title: str, body: str) -> str | None:
    """``doc`` with the numpydoc section ``title`` (``body`` below its rule)
    put in before its Examples section (at the end when it has none)."""
    if doc is None:
        return None
    m = _EXAMPLES.search(doc)
    pad = m.group("indent") if m else ""
    lines = [title, "-" * len(title), *textwrap.dedent(body).strip("\n").splitlines()]
    block = "\n".join(pad + ln if ln else ln for ln in lines)
    if m is None:
        return doc.rstrip() + "\n\n" + block + "\n"
    return doc[:m.start()] + block + "\n\n" + doc[m.start():]


def section(title: str, body: str) -> Callable[[T], T]:
    """Decorator: put the section ``title`` into a docstring before its Examples."""
    def deco(obj: T) -> T:
        target: Any = obj
        target.__doc__ = insert_section(target.__doc__, title, body)
        return obj
    return deco


def bad_parameters(what: str) -> str:
    """The Raises body of a family whose constructor checks its parameters:
    ``what`` (the ValueError's cases) and the cases every family shares."""
    first = textwrap.fill(f"{what} (the message names the parameter and the first offending "
                          "index), or shapes that do not broadcast.", 88,
                          initial_indent="    ", subsequent_indent="    ",
                          break_on_hyphens=False)
    return f"ValueError\n{first}\nTypeError\n    Values that are not real numbers."


def raises_bad_parameters(what: str) -> Callable[[T], T]:
    """Decorator: the Raises section :func:`bad_parameters` of ``what``."""
    return section("Raises", bad_parameters(what))


def fill_members(cls: type, **fragments: str) -> None:
    """Fill the slots of ``cls``'s docstring and of its own methods' (a
    family of methods sharing, say, the set-up lines of their Examples)."""
    cls.__doc__ = fill(cls.__doc__, **fragments)
    for member in vars(cls).values():
        func = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        if inspect.isfunction(func) and func.__doc__:
            func.__doc__ = fill(func.__doc__, **fragments)


def fill_module(namespace: dict[str, Any], **fragments: str) -> None:
    """Fill the slots of every function and class a module defines (and of
    the classes' own methods); call it at the end of the module with
    ``globals()``."""
    module = namespace["__name__"]
    for obj in list(namespace.values()):
        if getattr(obj, "__module__", None) != module:
            continue
        if inspect.isclass(obj):
            fill_members(obj, **fragments)
        elif inspect.isfunction(obj) and obj.__doc__:
            obj.__doc__ = fill(obj.__doc__, **fragments)
