"""Payoffs of whole paths for :func:`mcscore.finance.greeks`: the
:class:`Payoff` object (a function of the paths and, optionally, its
derivative) and factories for baskets, spreads, exchange, best-of and
worst-of options."""
from __future__ import annotations

from typing import Any

import operator

import numpy as np

from .. import _docs
from .. import _validation as V
from ._common import PAYOFFS, _positive


# ---------------------------------------------------------------------------
# any payoff, several assets
# ---------------------------------------------------------------------------

PATH_GREEKS = ("price", "delta", "gamma", "vega", "rho", "theta", "dividend")


class Payoff:
    """A payoff of simulated paths for :func:`greeks`, with its derivative.

    ``fn(paths) -> (m,)`` and, optionally, ``grad(paths) -> dh/dS`` of the
    shape of paths, ``(m, steps + 1, assets)``; ``assets`` (if not None) is
    the number of assets it needs.

    ``grid``: a tuple, the shape of a grid of payoffs priced on the same
    paths (strikes, expiries, ...): then ``fn(paths) -> (m,) + grid`` and
    ``grad(paths) -> (m,) + grid + (steps + 1, assets)``, and every Greek
    of the result has the grid's shape in front.

    ``terminal=True`` promises that fn and grad read the paths only at the
    last date (with ``expiries``, only at the expiry dates): the engine then
    does not form S at the other dates (they hold NaN), which saves most
    of the work of a European payoff on a fine time grid.

    Parameters
    ----------
    fn : callable
        ``fn(paths) -> (m,)`` (or ``(m,) + grid``).
    grad : callable, optional
        ``grad(paths) -> dh/dS`` (pathwise Greeks need it).
    name : str, optional
        The label (default ``fn.__name__``).
    assets : int, optional
        The number of assets it needs (>= 1).
    grid : tuple of int, optional
        The shape of a grid of payoffs per path.
    terminal : bool, default False
        fn and grad read the paths only at the last date (or the expiries).

    Raises
    ------
    TypeError
        ``fn`` not callable, ``grad`` neither callable nor None, ``terminal``
        not a bool.
    ValueError
        A grid that is not a tuple of positive ints, ``assets`` < 1.

    Examples
    --------
    A European call written as a path payoff (``terminal=True``: it reads
    only the last date), checked against Black-Scholes:

    >>> import numpy as np
    >>> import mcscore as mc
    >>> call = mc.finance.Payoff(lambda paths: np.maximum(paths[:, -1, 0] - 100.0, 0.0),
    ...                          terminal=True)
    >>> g = mc.finance.greeks(call, spot=100.0, rate=0.05, vol=0.2, maturity=1.0, n=10_000, rng=0)
    >>> exact = mc.finance.black_scholes("call", spot=100.0, strike=100.0, rate=0.05, vol=0.2,
    ...                                  maturity=1.0)
    >>> bool(abs(g.price - exact["price"]) < 5 * g.stderr["price"])
    True
    """

    def __init__(self, fn: Any, grad: Any = None, *, name: Any = None, assets: Any = None,
                 grid: Any = None, terminal: Any = False) -> None:
        if not callable(fn):
            raise TypeError(f"Payoff: fn must be callable, got {type(fn).__name__}")
        if grad is not None and not callable(grad):
            raise TypeError(f"Payoff: grad must be callable or None, got {type(grad).__name__}")
        if grid is not None:
            try:
                grid = tuple(int(operator.index(k)) for k in np.atleast_1d(grid))
            except TypeError:
                grid = None
            if grid is None or not grid or min(grid) < 1:
                raise ValueError("Payoff: grid must be a tuple of positive ints (the shape of "
                                 "the payoffs per path)")
        if assets is not None:
            assets = V.integer("assets", assets, minimum=1)
        self.fn, self.grad, self.assets, self.grid = fn, grad, assets, grid
        self.terminal = V.flag("terminal", terminal)
        self.name = name or getattr(fn, "__name__", "payoff")

    def __call__(self, paths: Any) -> Any:
        return self.fn(paths)

    def __repr__(self) -> Any:
        return f"Payoff({self.name!r})"


def _terminal(name: Any, assets: Any, value: Any, slope: Any) -> Any:
    """A Payoff of the terminal values S(T) only: value(ST) -> (m,),
    slope(ST) -> (m, assets) its gradient."""
    def fn(paths: Any) -> Any:
        return value(paths[:, -1, :])

    def grad(paths: Any) -> Any:
        g = np.zeros(paths.shape)
        g[:, -1, :] = slope(paths[:, -1, :])
        return g

    return Payoff(fn, grad, name=name, assets=assets, terminal=True)


def _weights(weights: Any, what: Any) -> Any:
    w = V.as_real_array("weights", weights)
    if w.ndim != 1 or w.size < 1 or not np.isfinite(w).all():
        raise ValueError(f"weights of {what} must be a non-empty 1-D array of finite numbers, "
                         f"got {weights!r}")
    return w


def basket_call(strike: Any, weights: Any) -> Any:
    """(sum_i w_i S_i(T) - K)^+ on len(weights) assets.

    %(basket_sections)s

    Examples
    --------
    >>> import mcscore as mc
    >>> pay = mc.finance.basket_call(100.0, [0.5, 0.5])
    >>> g = mc.finance.greeks(pay, spot=[100.0, 100.0], rate=0.03, vol=[0.2, 0.3], maturity=1.0,
    ...                       correlation=[[1.0, 0.5], [0.5, 1.0]], n=10_000, rng=0)
    >>> g.delta.shape, g.gamma.shape                 # per asset; with the cross-gamma
    ((2,), (2, 2))
    """
    strike = V.finite_real("strike", strike)
    w = _weights(weights, "basket_call")
    return _terminal("basket_call", w.size, lambda s: np.maximum(s @ w - strike, 0.0),
                     lambda s: (s @ w > strike)[:, None] * w)


def basket_put(strike: Any, weights: Any) -> Any:
    """(K - sum_i w_i S_i(T))^+ on len(weights) assets.

    %(basket_sections)s

    Examples
    --------
    %(two_asset_path)s
    >>> mc.finance.basket_put(105.0, [0.5, 0.5])(paths)
    array([5.])
    """
    strike = V.finite_real("strike", strike)
    w = _weights(weights, "basket_put")
    return _terminal("basket_put", w.size, lambda s: np.maximum(strike - s @ w, 0.0),
                     lambda s: -(s @ w < strike)[:, None] * w)


def geometric_basket_call(strike: Any, weights: Any) -> Any:
    """(prod_i S_i(T)^{w_i} - K)^+ (weights summing to 1 make it lognormal).

    %(basket_sections)s

    Examples
    --------
    %(two_asset_path)s
    >>> pay = mc.finance.geometric_basket_call(90.0, [0.5, 0.5])
    >>> bool(np.isclose(pay(paths)[0], np.sqrt(110.0 * 90.0) - 90.0))
    True
    """
    strike = V.finite_real("strike", strike)
    w = _weights(weights, "geometric_basket_call")

    def g(s: Any) -> Any:
        return np.exp(np.log(s) @ w)

    return _terminal("geometric_basket_call", w.size, lambda s: np.maximum(g(s) - strike, 0.0),
                     lambda s: ((g(s) > strike) * g(s))[:, None] * w / s)


def spread_call(strike: Any, *, name: Any = "spread_call") -> Any:
    """(S_1(T) - S_2(T) - K)^+ on two assets.

    Parameters
    ----------
    strike : float
        K (finite; 0 is the exchange option).
    name : str, default "spread_call"
        The payoff's label.

    %(terminal_returns)s

    %(raises_strike)s

    Examples
    --------
    %(two_asset_path)s
    >>> mc.finance.spread_call(5.0)(paths)
    array([15.])
    """
    strike = V.finite_real("strike", strike)
    return _terminal(name, 2, lambda s: np.maximum(s[:, 0] - s[:, 1] - strike, 0.0),
                     lambda s: (s[:, 0] - s[:, 1] > strike)[:, None] * np.array([1.0, -1.0]))


def exchange() -> Any:
    """(S_1(T) - S_2(T))^+: Margrabe's option to exchange asset 2 for asset 1.

    Returns
    -------
    Payoff
        ``spread_call(0.0)`` named ``"exchange"``.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> mc.finance.exchange()(np.array([[[100.0, 100.0], [90.0, 95.0]]]))
    array([0.])
    """
    return spread_call(0.0, name="exchange")


_EXTREME_DOC = """{summary}

    Parameters
    ----------
    strike : float
        K (finite).

    Returns
    -------
    Payoff
        A terminal payoff with its derivative, on any number of assets.

    %(raises_strike)s

    Examples
    --------
    %(two_asset_path)s
    >>> mc.finance.{name}(95.0)(paths)
    {out}
    """


def _extreme_call(name: Any, pick: Any) -> Any:
    def make(strike: Any) -> Any:
        strike = V.finite_real("strike", strike)

        def slope(s: Any) -> Any:
            g = np.zeros(s.shape)
            i = pick(s)
            r = np.arange(len(s))
            g[r, i] = s[r, i] > strike
            return g

        return _terminal(name, None, lambda s: np.maximum(s[np.arange(len(s)), pick(s)] - strike,
                                                           0.0), slope)
    return make


best_of_call = _extreme_call("best_of_call", lambda s: np.argmax(s, axis=1))
best_of_call.__doc__ = _EXTREME_DOC.format(summary="(max_i S_i(T) - K)^+.", name="best_of_call",
                                           out="array([15.])")
worst_of_call = _extreme_call("worst_of_call", lambda s: np.argmin(s, axis=1))
worst_of_call.__doc__ = _EXTREME_DOC.format(summary="(min_i S_i(T) - K)^+.",
                                            name="worst_of_call", out="array([0.])")


def _builtin(name: Any, strike: Any, barrier: Any, ksteps: Any = None) -> Any:
    """The built-in single-asset payoffs as Payoff objects (for dividends,
    strike grids and expiry grids).  ``strike`` a scalar or a 1-D array of
    strikes; ``ksteps`` None (expiry at the end of the grid) or a 1-D array
    of expiry steps.  The grid is (expiries, strikes), the axes present."""
    if not isinstance(name, str) or name not in PAYOFFS:
        raise ValueError(f"payoff must be one of {', '.join(map(repr, PAYOFFS))}, a callable, "
                         f"a Payoff or a scipy.LowLevelCallable, got {name!r}")
    if strike is None:
        raise TypeError(f"greeks() missing required keyword argument 'strike' (for payoff "
                        f"{name!r})")
    if np.ndim(strike) > 1 or np.size(strike) < 1:
        raise ValueError(f"strike must be a scalar or a 1-D array of strikes, got shape "
                         f"{np.shape(strike)}")
    if np.ndim(strike) == 0 and ksteps is None and name != "up_and_out_call":
        return _builtin_one(name, _positive("strike", strike))
    K = np.atleast_1d(np.asarray(V.check("strike", V.as_real_array("strike", strike),
                                         "positive"), dtype=float))
    if name == "up_and_out_call":
        if barrier is None:
            raise ValueError("barrier is required for payoff 'up_and_out_call'")
        if np.ndim(barrier) != 0:
            raise TypeError(f"barrier must be a scalar real number, got shape "
                            f"{np.shape(barrier)}")
        H = _positive("barrier", barrier)
    elif barrier is not None:
        raise ValueError(f"barrier applies only to 'up_and_out_call', not to {name!r}")
    grid = (() if ksteps is None else (len(ksteps),)) + (() if np.ndim(strike) == 0
                                                         else (K.size,))

    def under(p: Any) -> Any:
        """(m, E) the underlying value at each expiry."""
        ks = [p.shape[1] - 1] if ksteps is None else ksteps
        x = p[:, :, 0]
        if name in ("asian_call", "geometric_asian_call"):
            c = np.cumsum(x[:, 1:] if name == "asian_call" else np.log(x[:, 1:]), axis=1)
            a = np.stack([c[:, k - 1] / k for k in ks], axis=1)
            return a if name == "asian_call" else np.exp(a)
        u = x[:, ks]
        if name == "up_and_out_call":
            top = np.maximum.accumulate(x[:, 1:], axis=1)
            u = np.where(np.stack([top[:, k - 1] for k in ks], axis=1) < H, u, 0.0)
        return u

    def value(u: Any) -> Any:
        if name in ("put", "digital_put"):
            x = K - u[:, :, None]
        else:
            x = u[:, :, None] - K
        if name.startswith("digital"):
            return (x > 0).astype(float)
        if name == "up_and_out_call":
            return np.where(u[:, :, None] > 0, np.maximum(x, 0.0), 0.0)
        return np.maximum(x, 0.0)

    def fn(p: Any) -> Any:
        return value(under(p)).reshape((len(p),) + grid)

    def grad(p: Any) -> Any:
        m, n1 = p.shape[0], p.shape[1]
        ks = [n1 - 1] if ksteps is None else ksteps
        u = under(p)
        g = np.zeros((m, len(ks), K.size, n1, 1))
        sign = -1.0 if name == "put" else 1.0
        on = (sign * (u[:, :, None] - K) > 0).astype(float)       # (m, E, K)
        for e, k in enumerate(ks):
            if name in ("call", "put"):
                g[:, e, :, k, 0] = sign * on[:, e]
            else:
                slope = (np.full((m, k), 1.0 / k) if name == "asian_call"
                         else u[:, e, None] / (k * p[:, 1:k + 1, 0]))   # (m, k)
                g[:, e, :, 1:k + 1, 0] = on[:, e, :, None] * slope[:, None, :]
        return g.reshape((m,) + grid + (n1, 1))

    lipschitz = name in ("call", "put", "asian_call", "geometric_asian_call")
    return Payoff(fn, grad if lipschitz else None, name=name, assets=1, grid=grid or None,
                  terminal=name in ("call", "put", "digital_call", "digital_put"))


def _builtin_one(name: Any, K: Any) -> Any:
    """One built-in payoff at one strike, expiring at the end of the grid."""
    one = np.ones(1)
    if name == "call":
        return basket_call(K, one)
    if name == "put":
        return basket_put(K, one)
    if name in ("digital_call", "digital_put"):
        sign = 1.0 if name == "digital_call" else -1.0
        return Payoff(lambda p: (sign * (p[:, -1, 0] - K) > 0).astype(float), name=name,
                      terminal=True)

    def avg(p: Any) -> Any:
        x = p[:, 1:, 0]
        return x.mean(1) if name == "asian_call" else np.exp(np.log(x).mean(1))

    def grad(p: Any) -> Any:
        a = avg(p)
        g = np.zeros(p.shape)
        steps = p.shape[1] - 1
        d = 1.0 / steps if name == "asian_call" else a[:, None] / (steps * p[:, 1:, 0])
        g[:, 1:, 0] = (a > K)[:, None] * d
        return g

    return Payoff(lambda p: np.maximum(avg(p) - K, 0.0), grad, name=name, assets=1)

# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "basket_sections": """\
Parameters
----------
strike : float
    K (finite).
weights : array_like, shape (assets,)
    Finite weights, one per asset.

%(terminal_returns)s

Raises
------
ValueError
    A non-finite strike, or weights that are empty, not 1-d or not finite.
TypeError
    A strike that is not a real number.""",
    "two_asset_path": """\
>>> import numpy as np
>>> import mcscore as mc
>>> paths = np.array([[[100.0, 100.0], [110.0, 90.0]]])      # one path, 1 step, 2 assets""",
    "terminal_returns": """\
Returns
-------
Payoff
    A terminal payoff with its derivative (``grad``).""",
    "raises_strike": """\
Raises
------
ValueError
    A non-finite strike.""",
}
_docs.fill_module(globals(), **_DOC_FRAGMENTS)
