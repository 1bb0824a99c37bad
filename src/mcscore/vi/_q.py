"""The variational distribution q: a family or any object with the same
capabilities (a Joint), its parameters' unconstrained coordinates (the
maps, their inverse and Jacobian), rebuilding it with new parameters, and
its log density at its own draws."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..distributions import Distribution


def transforms(q: Any) -> dict[str, str]:
    """{param name: "identity" | "log" | "logit" | "tril_log_diag"}: the
    unconstrained coordinates :func:`fit` optimises for each of q's
    parameters (the family's ``vi_transforms``).  "tril_log_diag" is a
    Cholesky factor (MultivariateNormal's scale_tril): its entries below the
    diagonal as they are, the log of its diagonal, the zeros above the
    diagonal fixed (their gradient is 0).

    Parameters
    ----------
    q : Distribution or Joint
        The variational distribution.

    Returns
    -------
    dict of str to str

    Raises
    ------
    TypeError
        ``q`` that is not an mcscore distribution.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> mc.vi.transforms(mc.Normal(0.0, 1.0))
    {'loc': 'identity', 'scale': 'log'}
    >>> mc.vi.transforms(mc.MultivariateNormal(np.zeros(2), scale_tril=np.eye(2)))["scale_tril"]
    'tril_log_diag'
    """
    if not callable(getattr(q, "vi_transforms", None)):
        raise TypeError(f"q must be an mcscore distribution, got {type(q).__name__}")
    return q.vi_transforms()


def _diag_mask(v: Any) -> Any:
    """True on the diagonal of the last two axes of v."""
    return np.eye(v.shape[-1], dtype=bool)


def _to_unconstrained(kind: Any, v: Any) -> Any:
    if kind == "log":
        return np.log(v)
    if kind == "logit":
        return np.log(v) - np.log1p(-v)
    if kind == "tril_log_diag":
        return np.where(_diag_mask(v), np.log(np.where(_diag_mask(v), v, 1.0)), np.tril(v))
    return np.array(v, dtype=float)


def _from_unconstrained(kind: Any, u: Any) -> Any:
    if kind == "log":
        return np.exp(u)
    if kind == "logit":
        return 1.0 / (1.0 + np.exp(-u))
    if kind == "tril_log_diag":
        return np.where(_diag_mask(u), np.exp(np.where(_diag_mask(u), u, 0.0)), np.tril(u))
    return np.array(u, dtype=float)


def _jacobian(kind: Any, v: Any) -> Any:
    """d(param)/d(unconstrained) at the parameter value v (elementwise: each
    transform maps every entry by itself)."""
    if kind == "log":
        return v
    if kind == "logit":
        return v * (1.0 - v)
    if kind == "tril_log_diag":
        return np.where(_diag_mask(v), v, np.tril(np.ones_like(v), -1))
    return np.ones_like(v)


def _rebuild(q: Any, params: Any) -> Any:
    """A distribution of q's family with some parameters replaced."""
    kwargs = dict(q._all_params())
    kwargs.update(params)
    return type(q)(**kwargs)


def _log_q(q: Any, x: Any) -> Any:
    """log q(x) per draw; raises when q's own density is not finite at one of
    its draws (the ELBO's integrand would be infinite there)."""
    lp = q.log_prob(x)
    out = lp.reshape(lp.shape[0], -1).sum(1)
    bad = ~np.isfinite(out)
    if bad.any():
        i = int(np.argmax(bad))
        raise FloatingPointError(
            f"log q(x) = {out[i]} at draw {i} (x = {x[i]!r}) of q = {q!r}: q's density is not "
            "finite at a draw it made itself (e.g. a Gamma, Beta or Dirichlet draw that "
            "rounded to the edge of the support for a tiny concentration), so the ELBO's "
            "integrand log p - log q is infinite; keep q's concentrations away from 0")
    return out


# ---------------------------------------------------------------------------
# q: a family or any object with the same capabilities (a Joint)
# ---------------------------------------------------------------------------

_Q_CAPABILITIES = ("sample", "log_prob", "score", "params", "vi_transforms", "with_params")


def _check_q(q: Any) -> Any:
    if isinstance(q, Distribution):
        return q
    if isinstance(q, type) or not all(hasattr(q, a) for a in _Q_CAPABILITIES):
        raise TypeError(f"q must be an mcscore distribution (or an object with "
                        f"{', '.join(_Q_CAPABILITIES)}, such as a Joint), got "
                        f"{type(q).__name__}")
    return q


def _replace(q: Any, params: Any) -> Any:
    """q with some parameters replaced: the object's own ``with_params`` when
    it has one (a Joint), else the family's rebuild."""
    return _replacer(q)(params)


def _replacer(q: Any) -> Any:
    """The function ``params -> _replace(q, params)`` for a q that does not
    change, its lookups made once (a loop's many calls)."""
    with_params = getattr(q, "with_params", None)
    if callable(with_params):
        return with_params
    cls, fixed = type(q), dict(q._all_params())
    return lambda params: cls(**{**fixed, **params})
