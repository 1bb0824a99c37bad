"""The path engine of :func:`mcscore.finance.greeks`: any payoff of the paths
of several correlated geometric Brownian motions, of a :class:`Heston`
model or of any one-factor :class:`Diffusion`; paths and likelihood-ratio
weights are simulated and summed in Cython, the payoff is evaluated on whole
blocks of paths."""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike

from .. import _callables as C
from .. import _docs
from .. import _engine as E
from .. import _finance as F
from .. import _validation as V
from .._config import effective_n_threads
from .._progress import advance
from ..distributed import map_streams
from ._common import _DOC_FRAGMENTS as _COMMON_DOC_FRAGMENTS
from ._common import Greeks, METHODS, PAYOFFS, _merge, _positive
from .payoffs import PATH_GREEKS, Payoff, _builtin


class PathGreeks(Greeks):
    """Price and Greeks of a payoff of paths, with standard errors.

    Attributes
    ----------
    price, rho, theta : float
    delta, vega : float (one asset given as a scalar spot) or (assets,) array
    gamma : float, or (assets, assets) array (cross-gammas off the diagonal)
    stderr, variance : dict[str, float or array]
        Standard error and per-path variance of each, same shapes.
    method, estimators, alternatives, n, info : as in :class:`Greeks`
        (theta is -dV/dT).

    Built by :func:`greeks` for path payoffs, not by hand.

    %(greeks_init)s

    Examples
    --------
    %(basket_greeks)s
    >>> type(g).__name__, g.delta.shape, g.gamma.shape
    ('PathGreeks', (2,), (2, 2))
    """

    _names: tuple[str, ...] = PATH_GREEKS

    @staticmethod
    def _value(v: Any) -> Any:
        return v

    def z_scores(self, exact: Mapping[str, ArrayLike]) -> dict[str, Any]:
        """(estimate - exact) / stderr for each greek in ``exact`` (arrays
        for per-asset Greeks).

        Parameters
        ----------
        exact : mapping of str to float or array_like
            Exact values of some Greeks, shaped like the estimates.

        Returns
        -------
        dict of str to numpy.ndarray

        Raises
        ------
        KeyError
            A name that is not a Greek of this result.
        ValueError
            A value that does not broadcast to the estimate's shape.

        Examples
        --------
        %(basket_greeks)s
        >>> z = g.z_scores({"price": g.price})
        >>> float(z["price"])
        0.0
        """
        return {k: (np.asarray(getattr(self, k)) - np.asarray(v, float)) / self.stderr[k]
                for k, v in exact.items()}

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(payoff={self.info.get('payoff')!r}, method={self.method!r}, "
                 f"n={self.n})"]
        def fmt(v: Any, digits: Any) -> Any:
            return np.array2string(np.asarray(v), formatter={
                "float_kind": lambda x: f"{x:.{digits}g}"})

        for k in self._names:
            lines.append(f"  {k:<6} {fmt(getattr(self, k), 6)} +/- {fmt(self.stderr[k], 3)}"
                         f"   [{self.estimators[k]}]")
        return "\n".join(lines)


def _per_asset(name: Any, v: Any, d: Any, positive: Any = True, default: Any = None) -> Any:
    if v is None:
        v = default
    a = V.as_real_array(name, v)
    if a.ndim > 1 or (a.ndim == 1 and d is not None and a.size != d):
        want = "a scalar" if d is None else f"a scalar or {d} values (one per asset)"
        raise ValueError(f"{name} must be {want}, got shape {a.shape}")
    a = np.asarray(V.check(name, a, "positive" if positive else "real"), dtype=float)
    return a


def _correlation(correlation: Any, d: Any) -> Any:
    if correlation is None:
        return np.eye(d)
    c = np.array(V.as_real_array("correlation", correlation), dtype=float)
    if c.shape != (d, d):
        raise ValueError(f"correlation must be a {d} x {d} matrix (one row per asset), got "
                         f"shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("correlation must be finite")
    if not np.allclose(c, c.T, rtol=0.0, atol=1e-12):
        raise ValueError("correlation must be symmetric")
    if not np.allclose(np.diag(c), 1.0, rtol=0.0, atol=1e-12):
        raise ValueError(f"correlation must have a unit diagonal, got {np.diag(c)}")
    c = 0.5 * (c + c.T)
    np.fill_diagonal(c, 1.0)
    try:
        L = np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        L = None
    if L is None or np.min(np.diag(L)) < 1e-8:
        raise ValueError("correlation must be positive definite (its Cholesky factor failed "
                         "or is singular: the assets must not be perfectly correlated)")
    return c


def _expiries(expiries: Any, maturity: Any, steps: Any) -> Any:
    """Expiry times on the time grid t_k = k T / steps -> (sorted distinct
    steps k, the step of each given expiry, same shape)."""
    t = np.asarray(V.as_real_array("expiries", expiries), dtype=float)
    if t.size < 1 or not np.isfinite(t).all():
        raise ValueError(f"expiries must be a non-empty array of finite times, got {expiries!r}")
    dt = maturity / steps
    k = np.rint(t / dt)
    off = np.abs(k * dt - t) > 1e-9 * maturity
    if off.any() or k.min() < 1 or k.max() > steps:
        bad = t.ravel()[int(np.argmax(off.ravel() | (k.ravel() < 1) | (k.ravel() > steps)))]
        raise ValueError(f"expiries must lie on the time grid k * maturity / steps, k = 1.."
                         f"{steps} (maturity={maturity}, steps={steps}); got {bad}")
    k = k.astype(np.int64)
    return np.unique(k), k


def _path_index(first: Any, row: Any) -> Any:
    """The call's index of the buffer's row: first + row, or first(row)."""
    return first(int(row)) if callable(first) else first + int(row)


def _check_array(out: Any, what: Any, shape: Any, first: Any) -> Any:
    if isinstance(out, np.ma.MaskedArray):
        raise TypeError(f"{what} returned a masked array; return a plain array of reals")
    try:
        a = np.asarray(out)
    except Exception:
        raise TypeError(f"{what} returned {type(out).__name__}, not an array") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{what} returned dtype {a.dtype}; it must return real numbers")
    if a.shape != shape:
        raise ValueError(f"{what} returned shape {a.shape} instead of {shape} for a block of "
                         f"{shape[0]} paths")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if np.isfinite(a.sum()):                 # all finite (the common case, one pass)
        return a
    bad = ~np.isfinite(a)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise ValueError(f"{what} returned {a[i]} for path {_path_index(first, i[0])}; it "
                         "must be finite")
    return a


def _lower_payoff(payoff: Any, strike: Any, barrier: Any, d: Any, ksteps: Any = None) -> Any:
    """(kind, payoff callable or callback tuple, grad or None, name, grid,
    terminal)."""
    if isinstance(payoff, str):
        payoff = _builtin(payoff, strike, barrier, ksteps)
    elif barrier is not None:
        raise ValueError("barrier applies only to the built-in 'up_and_out_call'")
    llc = C._as_lowlevel(payoff)
    if llc is not None:
        code = C._callback_signature(llc.signature)
        if code is None:
            raise TypeError(f"payoff: LowLevelCallable signature {llc.signature!r} is not "
                            "supported; use one of: " + "; ".join(C.CALLBACK_SIGNATURES))
        cb = (C._address(llc.function, "function"), int(code),
              C._address(llc.user_data, "user_data"), llc)
        return "callback", cb, None, "LowLevelCallable", None, False
    if isinstance(payoff, Payoff):
        if payoff.assets is not None and payoff.assets != d:
            raise ValueError(f"payoff {payoff.name!r} is for {payoff.assets} asset(s), but "
                             f"spot gives {d}")
        return "python", payoff.fn, payoff.grad, payoff.name, payoff.grid, payoff.terminal
    if callable(payoff):
        return "python", payoff, None, getattr(payoff, "__name__", "payoff"), None, False
    raise ValueError(f"payoff must be one of {', '.join(map(repr, PAYOFFS))}, a vectorised "
                     "callable of the paths, a Payoff or a scipy.LowLevelCallable, got "
                     f"{payoff!r}")



class SobolPathGreeks(PathGreeks):
    """The PathGreeks of sampler="sobol" (finance/_qmc.py): every Greek of
    sampler="mc" but the dividend sensitivity."""

    _names = tuple(k for k in PATH_GREEKS if k != "dividend")

class Heston:
    """The Heston model for :func:`greeks` (``model=Heston(...)``):

        dS = (r - q) S dt + sqrt(v) S dW1,
        dv = kappa (theta - v) dt + xi sqrt(v) dW2,   d<W1, W2> = rho dt,

    simulated by log-Euler steps for S and Euler steps with full truncation
    for v (v+ = max(v, 0) in drift and diffusion).  Only the first step's
    density depends on S0 (and there v0 > 0 is known), so the likelihood-
    ratio delta and gamma weights are that step's Gaussian scores: with
    a = sqrt(v0 dt), e = Z1 - rho Z2 / sqrt(1 - rho^2),

        delta  e / (S0 a),      gamma  (e^2 - 1/(1 - rho^2) - a e) / (a S0)^2;

    pathwise, dS(t)/dS0 = S(t)/S0 on every path.

    ``param_greeks=True``: also the sensitivities to the model's parameters,
    named ``v0``, ``kappa``, ``theta``, ``xi``, ``rho``: by likelihood ratio,
    or with ``method="pathwise"`` (a payoff with a derivative) pathwise,
    d log S(t_k)/dparameter propagated through the scheme (through
    sqrt(v+), whose derivative grows like 1/sqrt(v+) near 0; a truncated
    step moves v by kappa theta dt).  A step with
    v+ > 0 is Gaussian given the past, increments y = (d log S, dv) with
    mean m = ((r - q - v+/2) dt, kappa (theta - v+) dt) and covariance
    v+ dt A, A = [[1, xi rho], [xi rho, xi^2]]; with u = (Z1 - rho Z2 / s,
    Z2 / (xi s)) and e = u / sqrt(v+ dt) its scores are

        kappa  e2 (theta - v+) dt          theta  e2 kappa dt
        xi     rho u1 u2 + xi u2^2 - 1/xi  rho    xi u1 u2 + rho / s^2
        state  -e1 dt/2 - e2 kappa dt + (Z1^2 + Z2^2 - 2) / (2 v+)

    Given the increments, the state v_k depends on v0 (dv_k/dv0 = 1) and,
    through the truncated steps (v+ = 0: v moves by kappa theta dt, no
    density), on kappa and theta (pathwise: dv/dkappa += theta dt, dv/dtheta
    += kappa dt).  Each parameter's weight is the sum over the Gaussian steps
    of its score plus the state's score times dv_k/dparameter.  Their
    variance is finite when 2 kappa theta / xi^2 > 2 (the 1/v+ terms).
    Estimates carry the scheme's discretisation bias, O(dt).

    Parameters
    ----------
    v0 : float
        The initial variance (> 0).
    kappa : float
        The mean-reversion speed (> 0).
    theta : float
        The long-run variance (> 0).
    xi : float
        The volatility of variance (> 0).
    rho : float
        The correlation of the two Brownian motions, in (-1, 1).
    param_greeks : bool, default False
        Also estimate the sensitivities to v0, kappa, theta, xi and rho.

    Raises
    ------
    TypeError
        A parameter that is not a scalar, ``param_greeks`` not a bool.
    ValueError
        A parameter outside its range.

    Examples
    --------
    %(heston_model)s
    >>> exact = mc.finance.heston_call(spot=100.0, strike=100.0, rate=0.03, maturity=1.0,
    ...                                model=model)
    >>> g = mc.finance.greeks("call", spot=100.0, strike=100.0, rate=0.03, vol=None, maturity=1.0,
    ...                       model=model, steps=100, n=20_000, rng=0)
    >>> bool(abs(g.price - exact["price"]) < 5 * g.stderr["price"] + 0.05)   # + the scheme's bias
    True
    """

    PARAMS = ("v0", "kappa", "theta", "xi", "rho")

    def __init__(self, *, v0: float, kappa: float, theta: float, xi: float, rho: float,
                 param_greeks: bool = False) -> None:
        for name, v in (("v0", v0), ("kappa", kappa), ("theta", theta), ("xi", xi)):
            if np.ndim(v) != 0:
                raise TypeError(f"Heston: {name} must be a scalar, got shape {np.shape(v)}")
        self.v0 = _positive("v0", v0)
        self.kappa = _positive("kappa", kappa)
        self.theta = _positive("theta", theta)
        self.xi = _positive("xi", xi)
        if np.ndim(rho) != 0:
            raise TypeError(f"Heston: rho must be a scalar, got shape {np.shape(rho)}")
        rho = float(V.check("rho", V.as_real_array("rho", rho), "real"))
        if not -1.0 < rho < 1.0:
            raise ValueError(f"Heston: rho must be in (-1, 1), got {rho}")
        self.rho = rho
        self.param_greeks = V.flag("param_greeks", param_greeks)

    def __repr__(self) -> str:
        return (f"Heston(v0={self.v0}, kappa={self.kappa}, theta={self.theta}, xi={self.xi}, "
                f"rho={self.rho}" + (", param_greeks=True)" if self.param_greeks else ")"))


class Diffusion:
    """A one-factor diffusion for :func:`greeks` (``model=Diffusion(...)``)::

        dX = drift(t, x, **params) dt + diffusion(t, x, **params) dW,

    X = S (``log=False``) or X = log S (``log=True``), simulated by Euler
    steps X_{k+1} = X_k + a_k dt + b_k sqrt(dt) Z_k (a_k, b_k the functions
    at (t_k, X_k)).  drift and diffusion are vectorised over x (an (m,) array
    of states) and must return (m,) arrays (or scalars), diffusion > 0.

    Each step is Gaussian given the past, so the likelihood-ratio weight of
    a model parameter theta is a sum over steps of Gaussian scores
    (Glasserman 2003, 7.3):

        sum_k Z_k sqrt(dt) (da_k/dtheta) / b_k + (Z_k^2 - 1) (db_k/dtheta) / b_k,

    and delta and gamma come from the first step's density
    N(x0 + a(x0) dt, b(x0)^2 dt): score s = Z m' / (b sqrt(dt))
    + (Z^2 - 1) b'/b with m' = 1 + a' dt, and the second-order weight
    s^2 + ds/dx0 (chained to S0 = e^{x0} when log).  The derivatives in
    theta and x0 are central differences of the given functions (relative
    step 1e-5; 1e-3 for the second derivatives in x0): their error, ~1e-9
    relative, is far below Monte Carlo's.  A path whose diffusion is not
    > 0 or not finite is an error (use log=True, or truncate in the
    functions as Heston's full truncation does).

    Parameters
    ----------
    drift, diffusion : callable
        ``fn(t, x, **params)`` -> an (m,) array or a scalar.
    params : dict of str to float, optional
        The model's parameters (identifiers, not the Greeks' names); each gets
        a likelihood-ratio sensitivity.
    log : bool, default False
        Simulate log S instead of S.

    Raises
    ------
    TypeError
        ``drift`` or ``diffusion`` not callable, ``params`` not a dict or a
        parameter not a scalar.
    ValueError
        A reserved or invalid parameter name, a non-finite value; at
        simulation, a drift or diffusion that is not finite (or diffusion <= 0).

    Examples
    --------
    GBM written as a diffusion of log S (Euler in log S is exact), against
    Black-Scholes:

    >>> import numpy as np
    >>> import mcscore as mc
    >>> gbm = mc.finance.Diffusion(lambda t, x, r, s: r - 0.5 * s * s, lambda t, x, r, s: s,
    ...                            {"r": 0.05, "s": 0.2}, log=True)
    >>> call = mc.finance.Payoff(lambda p: np.maximum(p[:, -1, 0] - 100.0, 0.0))
    >>> g = mc.finance.greeks(call, spot=100.0, rate=0.05, maturity=1.0, model=gbm, steps=4,
    ...                       n=20_000, rng=0)
    >>> bs = mc.finance.black_scholes("call", spot=100.0, strike=100.0, rate=0.05, vol=0.2,
    ...                               maturity=1.0)
    >>> bool(abs(g.price - bs["price"]) < 5 * g.stderr["price"])
    True
    >>> sorted(g.as_dict())                       # the model's parameters' sensitivities too
    ['delta', 'gamma', 'price', 'r', 's']
    """

    _RESERVED = frozenset(PATH_GREEKS) | {"n", "info", "method", "stderr", "variance",
                                          "estimators", "alternatives"}

    def __init__(self, drift: Callable[..., Any], diffusion: Callable[..., Any],
                 params: dict[str, float] | None = None, *, log: bool = False) -> None:
        if not callable(drift):
            raise TypeError(f"Diffusion: drift must be callable, got {type(drift).__name__}")
        if not callable(diffusion):
            raise TypeError(f"Diffusion: diffusion must be callable, got "
                            f"{type(diffusion).__name__}")
        if params is not None and not isinstance(params, dict):
            raise TypeError(f"Diffusion: params must be a dict {{name: number}}, got "
                            f"{type(params).__name__}")
        params = {} if params is None else dict(params)
        for k, v in params.items():
            if not isinstance(k, str) or not k.isidentifier() or k in self._RESERVED:
                raise ValueError(f"Diffusion: params names must be identifiers other than "
                                 f"{sorted(self._RESERVED)}, got {k!r}")
            if np.ndim(v) != 0:
                raise TypeError(f"Diffusion: params[{k!r}] must be a scalar, got shape "
                                f"{np.shape(v)}")
            params[k] = float(V.check(k, V.as_real_array(k, v), "real"))
        self.drift, self.diffusion, self.params, self.log = drift, diffusion, params, bool(log)

    def __repr__(self) -> str:
        return f"Diffusion(params={self.params}, log={self.log})"

    def _eval(self, fn: Any, what: Any, t: Any, x: Any, params: Any) -> Any:
        m = len(x)
        out = np.asarray(fn(t, x, **params), dtype=np.float64)
        if out.shape not in ((), (m,)):
            raise ValueError(f"Diffusion: {what} returned shape {out.shape} for {m} states")
        out = np.broadcast_to(out, (m,))
        if not np.isfinite(out).all() or (what == "diffusion" and not (out > 0).all()):
            i = int(np.argmax(~np.isfinite(out) | ((out <= 0) if what == "diffusion" else False)))
            raise ValueError(f"Diffusion: {what}({t}, {x[i]}) = {out[i]}; it must be finite"
                             + (" and > 0" if what == "diffusion" else ""))
        return out

    def _ab(self, t: Any, x: Any, params: Any = None) -> Any:
        params = self.params if params is None else params
        return (self._eval(self.drift, "drift", t, x, params),
                self._eval(self.diffusion, "diffusion", t, x, params))

    def _dtheta(self, t: Any, x: Any, name: Any) -> Any:
        v = self.params[name]
        h = 1e-5 * max(1.0, abs(v))
        up = dict(self.params, **{name: v + h})
        dn = dict(self.params, **{name: v - h})
        (au, bu), (ad, bd) = self._ab(t, x, up), self._ab(t, x, dn)
        return (au - ad) / (2 * h), (bu - bd) / (2 * h)

    def simulate(self, z: Any, m: Any, steps: Any, maturity: Any, s0: Any, paths: Any,
                 wts: Any) -> Any:
        """Euler paths from the normals z (m, steps) into paths[:m, :, 0]
        and the weights [delta, gamma, params...] into wts[:m].

        Called by :func:`greeks` block by block.

        Parameters
        ----------
        z : numpy.ndarray, shape (m, steps)
            Standard normals.
        m : int
            The paths of the block.
        steps : int
            Time steps.
        maturity : float
            T.
        s0 : float
            The initial spot.
        paths : numpy.ndarray, shape (>= m, steps + 1, 1)
            Filled with the paths.
        wts : numpy.ndarray, shape (>= m, 2 + len(params))
            Filled with the likelihood-ratio weights.

        Returns
        -------
        None

        Raises
        ------
        ValueError
            A drift or diffusion that is not finite, or a diffusion <= 0.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> model = mc.finance.Diffusion(lambda t, x: 0.0, lambda t, x: 1.0)   # Brownian motion
        >>> paths, wts = np.zeros((2, 3, 1)), np.zeros((2, 2))
        >>> model.simulate(np.ones((2, 2)), 2, 2, 2.0, 10.0, paths, wts)
        >>> paths[0, :, 0].tolist()
        [10.0, 11.0, 12.0]
        """
        dt = maturity / steps
        sq = math.sqrt(dt)
        x0 = math.log(s0) if self.log else s0
        # first step's density in x0: derivatives by central differences
        hx = 1e-5 * max(1.0, abs(x0))
        h2 = 1e-3 * max(1.0, abs(x0))
        pts = np.array([x0 - h2, x0 - hx, x0, x0 + hx, x0 + h2])
        a, b = self._ab(0.0, pts)
        a1, b1 = (a[3] - a[1]) / (2 * hx), (b[3] - b[1]) / (2 * hx)
        a2, b2 = (a[4] - 2 * a[2] + a[0]) / h2 ** 2, (b[4] - 2 * b[2] + b[0]) / h2 ** 2
        bb = b[2]
        z1 = z[:, 0]
        mp = 1.0 + a1 * dt
        score = z1 * mp / (bb * sq) + (z1 * z1 - 1.0) * b1 / bb
        dz = -mp / (bb * sq) - z1 * b1 / bb
        dscore = (dz * mp / (bb * sq) + z1 * (a2 * dt / (bb * sq) - mp * b1 / (bb * bb * sq))
                  + 2.0 * z1 * dz * b1 / bb + (z1 * z1 - 1.0) * (b2 / bb - (b1 / bb) ** 2))
        if self.log:
            wts[:m, 0] = score / s0
            wts[:m, 1] = (score * score + dscore - score) / (s0 * s0)
        else:
            wts[:m, 0] = score
            wts[:m, 1] = score * score + dscore
        names = list(self.params)
        wts[:m, 2:] = 0.0
        x = np.full(m, x0)
        paths[:m, 0, 0] = s0
        for k in range(steps):
            t = k * dt
            a, b = self._ab(t, x)
            zk = z[:, k]
            for j, name in enumerate(names):
                da, db = self._dtheta(t, x, name)
                wts[:m, 2 + j] += zk * sq * da / b + (zk * zk - 1.0) * db / b
            x = x + a * dt + b * sq * zk
            paths[:m, k + 1, 0] = np.exp(x) if self.log else x


class SpotGreeks(PathGreeks):
    """Price, delta and gamma of a payoff under a model other than GBM (see
    :class:`PathGreeks`; floats).

    Built by :func:`greeks` with ``model=``, not by hand.

    Parameters
    ----------
    *args, **kwargs
        As :class:`PathGreeks`.
    names : sequence of str, optional
        The Greeks it holds (a Diffusion's parameters added).

    Raises
    ------
    KeyError
        ``values`` without one of the names.

    Examples
    --------
    %(heston_model)s
    >>> g = mc.finance.greeks("call", spot=100.0, strike=100.0, rate=0.03, vol=None, maturity=1.0,
    ...                       model=model, steps=50, n=10_000, rng=0)
    >>> type(g).__name__, sorted(g.as_dict())
    ('SpotGreeks', ['delta', 'gamma', 'price'])
    """

    _names = ("price", "delta", "gamma")

    def __init__(self, *args: Any, names: Any = None, **kwargs: Any) -> None:
        if names is not None:
            self._names = tuple(names)     # with a Diffusion's parameters
        super().__init__(*args, **kwargs)


def _evaluate(kind: Any, fn: Any, grad: Any, paths: Any, m: Any, grid: Any, shape: Any, at: Any,
              h: Any, dates: Any = -1) -> Any:
    """The payoff (and its gradient) on the first m paths of the buffer
    paths: (hv (m,) + grid, gv or None), checked (S finite at `dates`)."""
    if not np.isfinite(paths[:m, dates]).all():
        raise FloatingPointError("the simulated prices overflowed (S leaves the range of a "
                                 "double): the estimates would be inf or NaN")
    view = paths[:m]
    view.flags.writeable = False       # the payoff only reads it
    if kind == "callback":
        bad = F.callback_block(fn[0], fn[1], fn[2], paths, m, h)
        if bad >= 0:
            raise ValueError(f"payoff (a LowLevelCallable) reported an error at path "
                             f"{_path_index(at, bad)}")
        hv = _check_array(h[:m], "payoff", (m,), at)
    else:
        hv = _check_array(fn(view), "payoff", (m,) + grid, at)
    gv = None if grad is None else _check_array(grad(view), "payoff_grad",
                                                (m,) + grid + shape, at)
    return hv, gv


def _finish(stats: Any, shifts: Any) -> Any:
    """(mean, var, n) per column from per-stream sums (streams, columns, .)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = [_merge(stats[:, c], shifts[:, c]) for c in range(stats.shape[1])]
    mean = np.array([o[0] for o in out])
    var = np.array([o[1] for o in out])
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise FloatingPointError("the estimates are not finite (the payoff or the weights "
                                 "overflowed)")
    return mean, var, out[0][2]


def _run_blocks(plan: Any, chunk: Any, shape: Any, normals: Any, nq: Any, grid: Any, simulate: Any,
                payoff: Any, grad: Any, accumulate: Any) -> Any:
    """A model's paths (serial): stream by stream, block by block, chunk by
    chunk: simulate paths, evaluate the payoff (and its gradient) on the
    whole chunk, accumulate each of its grid's columns; returns (mean, var,
    n) of the nq quantities per column, (columns, nq) arrays."""
    kind, fn = payoff
    ncols = math.prod(grid)
    paths = np.empty((chunk,) + shape)
    h = np.empty(chunk)
    stats = np.zeros((plan.used, ncols, 1 + 2 * nq))
    shifts = np.zeros((plan.used, ncols, nq))
    with np.errstate(over="ignore", invalid="ignore"):
        for s, bg in enumerate(plan.bitgens(np.arange(plan.used))):
            stream = F.PathStream(bg, chunk * normals)
            first = True
            for b in range(s, plan.n_blocks, plan.n_streams):
                rows, done = plan.block_rows(b), 0
                while done < rows:
                    m = min(chunk, rows - done)
                    at = b * plan.block_size + done
                    simulate(stream, m, paths)
                    hv, gv = _evaluate(kind, fn, grad, paths, m, grid, shape, at, h)
                    hv = hv.reshape(m, ncols)
                    gv = None if gv is None else gv.reshape((m, ncols) + shape)
                    for c in range(ncols):
                        accumulate(m, np.ascontiguousarray(hv[:, c]), paths,
                                   None if gv is None else np.ascontiguousarray(gv[:, c]),
                                   stats[s, c], shifts[s, c], first, c)
                    first = False
                    done += m
                    advance(m)
    return _finish(stats, shifts)


# doubles of paths (and payoff gradients) a round of the GBM engine holds
_ROUND_VALUES = 1 << 21


def _run_gbm(plan: Any, model: Any, cols: Any, nq: Any, grid: Any, payoff: Any, grad: Any,
             terminal: Any, streams: Any = None, threads: Any = None) -> Any:
    """Correlated GBM (or Heston) paths in the parallel engine
    (_finance.GbmEngine), in rounds of consecutive blocks of the given
    streams (default: all): simulate (parallel), the payoff on the round's
    paths, accumulate (parallel).  Returns the per-stream sums (stats,
    shifts) of those streams."""
    kind, fn = payoff
    steps, maturity, rate, s0, drift, sig, chol, cinv, uniq, heston, nw = model
    d, ncols, bs = s0.size, math.prod(grid), plan.block_size
    streams = np.arange(plan.used) if streams is None else np.asarray(streams, dtype=np.int64)
    blocks = np.concatenate([np.arange(s, plan.n_blocks, plan.n_streams, dtype=np.int64)
                             for s in streams])
    blocks.sort()
    shape = (steps + 1, d)
    tangents = heston is not None and nw >= 7 and grad is not None
    per_block = bs * ((steps + 1) * d * (1 + (ncols if grad is not None else 0))
                      + len(uniq) * nw + (5 * (steps + 1) if tangents else 0))
    R = max(1, min(len(streams), _ROUND_VALUES // per_block))
    sparse = terminal and kind != "callback" and heston is None
    dates = uniq if sparse else -1
    eng = F.GbmEngine(list(plan.bitgens(np.arange(plan.used))), plan.n, plan.n_streams, bs, R,
                      plan.threads if threads is None else threads, steps, maturity, rate, s0,
                      drift, sig, chol, cinv, uniq, *cols, nq, sparse, heston, nw, tangents)
    h = np.empty(R * bs)
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, len(blocks), R):
            rnd = blocks[start:start + R]
            eng.simulate(rnd)
            m = (len(rnd) - 1) * bs + plan.block_rows(int(rnd[-1]))
            hv, gv = _evaluate(kind, fn, grad, eng.paths, m, grid, shape,
                               lambda r, rnd=rnd: int(rnd[r // bs]) * bs + r % bs, h, dates)
            eng.accumulate(rnd, hv.reshape(m, ncols), None if gv is None else gv.reshape(m, -1))
            advance(m)
    return eng.stats[streams], eng.shifts[streams]


def _gbm_task(plan: Any, model: Any, cols: Any, nq: Any, grid: Any, payoff: Any, grad: Any,
              terminal: Any, streams: Any, n_threads: Any) -> Any:
    """_run_gbm for a group of streams on a Dask worker (threads resolved
    there): (streams, stats, shifts)."""
    stats, shifts = _run_gbm(plan, model, cols, nq, grid, payoff, grad, terminal, streams,
                             effective_n_threads(n_threads, work_items=len(streams)))
    return streams, stats, shifts


def _run_gbm_dask(client: Any, n_threads: Any, plan: Any, *head: Any) -> Any:
    """The streams in groups on Dask workers (mcscore.distributed), merged
    into the same per-stream sums as a local run: the same estimates to the
    bit."""
    nq, grid = head[2], head[3]
    ncols = math.prod(grid)
    stats = np.zeros((plan.used, ncols, 1 + 2 * nq))
    shifts = np.zeros((plan.used, ncols, nq))

    def on_result(res: Any) -> Any:
        st, rows, sh = res
        stats[st], shifts[st] = rows, sh

    map_streams(client, plan, _gbm_task, (plan,) + head, (n_threads,), n_threads=n_threads,
                n_tasks=None, kind="finance-paths", on_result=on_result)
    return stats, shifts


def _estimators(method: Any, names: Any) -> Any:
    if method == "lr":
        est = dict.fromkeys(names[1:], "likelihood ratio")
        est["gamma"] = "second-order likelihood ratio"
    else:
        est = dict.fromkeys(names[1:], "pathwise")
        est["gamma"] = "mixed (LR of the pathwise delta)"
    est["price"] = "plain"
    return est


def _greeks_paths(payoff: Any, *, spot: Any, strike: Any, rate: Any, vol: Any, maturity: Any,
                  n: Any, steps: Any, barrier: Any, rng: Any, method: Any, n_streams: Any,
                  block_size: Any, client: Any, dividend: Any, correlation: Any, payoff_grad: Any,
                  model: Any = None, expiries: Any = None, n_threads: Any = None) -> Any:
    """greeks() for a payoff of paths (see its docstring)."""
    if client is not None and not (hasattr(client, "submit") and hasattr(client, "nthreads")):
        raise ValueError(f"client must be a dask.distributed.Client, got "
                         f"{type(client).__name__}")
    if client is not None and isinstance(model, Diffusion):
        raise ValueError(f"client (Dask) runs geometric Brownian motion and Heston paths, not "
                         f"model={model!r}; run it locally (client=None)")
    if model is not None and not isinstance(model, (Heston, Diffusion)):
        raise TypeError(f"model must be None (geometric Brownian motion), a finance.Heston or "
                        f"a finance.Diffusion, got {type(model).__name__}")
    if np.ndim(spot) > 1 or (model is not None and np.ndim(spot) != 0):
        raise ValueError(f"spot must be a scalar or one value per asset (a scalar for "
                         f"model={model!r}), got shape {np.shape(spot)}")
    scalar = np.ndim(spot) == 0
    s0 = np.atleast_1d(_per_asset("spot", spot, None))
    d = s0.size
    if d < 1:
        raise ValueError("spot must hold at least one asset")
    if model is None:
        sig = np.broadcast_to(np.atleast_1d(_per_asset("vol", vol, d)), (d,)).copy()
    elif vol is not None or correlation is not None:
        raise ValueError(f"vol and correlation do not apply to model={model!r} (its "
                         "volatility is the model's)")
    q = np.broadcast_to(np.atleast_1d(_per_asset("dividend", dividend, d, positive=False,
                                                 default=0.0)), (d,)).copy()
    for name, v in (("rate", rate), ("maturity", maturity)):
        if np.ndim(v) != 0:
            raise TypeError(f"{name} must be a scalar real number, got shape {np.shape(v)}")
    rate = float(V.check("rate", V.as_real_array("rate", rate), "real"))
    maturity = _positive("maturity", maturity)
    steps = V.integer("steps", steps, minimum=1, maximum=10**6)
    corr: Any = _correlation(correlation, d) if model is None else None
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be 'lr' or 'pathwise', got {method!r}")
    ksteps, kgiven = None, None
    if expiries is not None:
        if model is not None:
            raise ValueError(f"expiries apply to geometric Brownian motion only, not to "
                             f"model={model!r}; run one maturity at a time")
        ksteps, kgiven = _expiries(expiries, maturity, steps)
    kind, fn, grad, name, grid, terminal = _lower_payoff(
        payoff, strike, barrier, d, None if kgiven is None else kgiven.ravel().tolist())
    if grid is None:
        grid = () if kgiven is None else kgiven.shape
    if kind == "callback" and client is not None:
        raise ValueError("client: a scipy.LowLevelCallable payoff is a function pointer into "
                         "this process and cannot be sent to Dask workers; use a picklable "
                         "Python payoff with client=, or run the callback locally")
    if kind == "callback" and grid != ():
        raise ValueError("a LowLevelCallable payoff returns one value per path: expiries (a "
                         "grid of payoffs) need a Python payoff returning (m,) + grid")
    if kgiven is None:
        col_steps = np.full(grid, steps, dtype=np.int64)
    elif isinstance(payoff, str):                       # built-in grid: (expiries, strikes)
        col_steps = np.broadcast_to(kgiven.reshape(kgiven.shape + (1,) * (len(grid) - 1)),
                                    grid)
    else:
        try:
            col_steps = np.broadcast_to(kgiven, grid)
        except ValueError:
            raise ValueError(f"expiries of shape {kgiven.shape} do not broadcast to the "
                             f"payoff's grid {grid}") from None
    col_steps = col_steps.ravel()
    if payoff_grad is not None:
        if not callable(payoff_grad):
            raise TypeError(f"payoff_grad must be callable, got {type(payoff_grad).__name__}")
        grad = payoff_grad
    if isinstance(model, Diffusion) and (method == "pathwise" or grad is not None):
        raise ValueError("method='pathwise' and payoff_grad are not supported for a "
                         "Diffusion model (likelihood ratio only); use method='lr' without "
                         "payoff_grad")
    if isinstance(model, Diffusion) and dividend is not None:
        raise ValueError("dividend does not apply to a Diffusion model: put the yield in its "
                         "drift")
    if method == "pathwise" and grad is None:
        raise ValueError(
            f"method='pathwise' needs the payoff's derivative along the path: pass "
            f"payoff_grad(paths) -> dh/dS (shape of paths) or a Payoff with grad; payoff "
            f"{name!r} has none (for a discontinuous payoff use method='lr')")

    ncols = math.prod(grid)
    normals = steps * (d if model is None else 1 if isinstance(model, Diffusion) else 2)
    plan = E.Plan(n, normals, rng, n_streams, block_size,
                  1 if isinstance(model, Diffusion) else n_threads)
    dt = maturity / steps
    # per column: its expiry's index among the distinct ones, step, time, discount
    uniq = np.array([steps], dtype=np.int64) if ksteps is None else ksteps
    col_e = np.searchsorted(uniq, col_steps)
    col_T = [maturity if k == steps else k * dt for k in col_steps]
    col_disc = [math.exp(-rate * T) for T in col_T]
    if model is None:
        chol = np.linalg.cholesky(corr)
        cinv = np.linalg.inv(corr)
        cinv = 0.5 * (cinv + cinv.T)
        drift = rate - q - 0.5 * sig * sig
        nw = F.n_weights(d)
        names: tuple[str, ...] = PATH_GREEKS
        engine: tuple[Any, ...] = (steps, maturity, rate, s0, drift, sig, chol, cinv, uniq, None,
                                   nw)
    elif isinstance(model, Heston):
        names = SpotGreeks._names + (Heston.PARAMS if model.param_greeks else ())
        nw = len(names) - 1
        engine = (steps, maturity, rate, s0, np.zeros(1), np.ones(1), np.eye(1), np.eye(1),
                  uniq, (model.v0, model.kappa, model.theta, model.xi, model.rho, float(q[0])),
                  nw)
    if model is None or isinstance(model, Heston):
        nq = 1 + nw * (2 if grad is not None else 1)
        run = (plan, engine, (col_e, col_steps, col_T, col_disc), nq, grid, (kind, fn), grad,
               terminal and payoff_grad is None)
        if client is None:
            mean, var, nn = _finish(*_run_gbm(*run))
        else:
            mean, var, nn = _finish(*_run_gbm_dask(client, n_threads, *run))
    else:
        sp = float(s0[0])
        names = SpotGreeks._names + tuple(model.params)
        nw = len(names) - 1
        per_path = (steps + 1) * 2 * (ncols if grad is not None else 1)
        chunk = max(1, min(plan.block_size, (1 << 18) // per_path))
        wts = np.empty((chunk, nw))

        def simulate(stream: Any, m: Any, paths: Any) -> Any:
            z = F.normals(stream, m * steps).reshape(m, steps)
            model.simulate(z, m, steps, maturity, sp, paths, wts)

        def accumulate(m: Any, hv: Any, paths: Any, gv: Any, st: Any, sh: Any, first: Any,
                       c: Any) -> Any:
            F.accumulate_block(m, hv, wts, col_disc[c], st, sh, first)
        nq = 1 + nw * (2 if grad is not None else 1)
        mean, var, nn = _run_blocks(plan, chunk, (steps + 1, d), normals, nq, grid, simulate,
                                    (kind, fn), grad, accumulate)
    se = np.sqrt(var / nn)
    iu = np.triu_indices(d)
    G = d * (d + 1) // 2

    def unpack(x: Any, off: Any) -> Any:
        """{greek: estimate} from the (columns, nq) array x, grid axes first."""
        if model is not None:
            out = {k: x[:, 0 if k == "price" else off + i - 1] for i, k in enumerate(names)}
        else:
            g = np.empty((ncols, d, d))
            g[:, iu[0], iu[1]] = x[:, off + 2 * d + 2:off + 2 * d + 2 + G]
            g[:, iu[1], iu[0]] = g[:, iu[0], iu[1]]
            out = {"price": x[:, 0], "delta": x[:, off:off + d], "vega": x[:, off + d:off + 2 * d],
                   "rho": x[:, off + 2 * d], "theta": x[:, off + 2 * d + 1], "gamma": g,
                   "dividend": x[:, off + nw - d:off + nw]}
            if scalar:
                out = {k: v.reshape(ncols) for k, v in out.items()}
        out = {k: v.reshape(grid + v.shape[1:]).copy() for k, v in out.items()}
        return {k: float(v) if v.ndim == 0 else v for k, v in out.items()}

    alternatives = {}
    for mth, off in (("lr", 1), ("pathwise", 1 + nw)):
        if mth == "pathwise" and grad is None:
            continue
        e, ee = unpack(mean, off), unpack(se, off)
        alternatives[mth] = {k: (e[k], ee[k]) for k in names}
    off = 1 if method == "lr" else 1 + nw
    values, stderr, variance = unpack(mean, off), unpack(se, off), unpack(var, off)
    info = plan.info()
    info.update(threads=plan.threads, payoff=name, spot=s0 if not scalar else float(s0[0]), strike=strike,
                rate=rate, dividend=q, maturity=maturity, steps=steps, assets=d, model=model,
                grid=grid, expiries=None if kgiven is None else kgiven * dt)
    if model is None:
        info.update(vol=sig, correlation=corr)
    est = _estimators(method, names)

    if model is None:
        return PathGreeks(values, stderr, variance, method, est, alternatives, int(nn), info)
    return SpotGreeks(values, stderr, variance, method, est, alternatives, int(nn), info,
                      names=names)

# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "basket_greeks": """\
>>> import numpy as np
>>> import mcscore as mc
>>> pay = mc.finance.basket_call(100.0, [0.5, 0.5])
>>> g = mc.finance.greeks(pay, spot=[100.0, 100.0], rate=0.03, vol=[0.2, 0.3], maturity=1.0,
...                       n=10_000, rng=0)""",
}
_docs.fill_module(globals(), **_COMMON_DOC_FRAGMENTS, **_DOC_FRAGMENTS)
