"""Shared pieces of mcscore.finance: the names of payoffs and Greeks, the
:class:`Greeks` result, argument checks, and the merge of per-stream sums."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .. import _docs
from .. import _validation as V
from .._algebra import common_shift, shift_sums


PAYOFFS = ("call", "put", "digital_call", "digital_put", "asian_call", "geometric_asian_call",
           "up_and_out_call")
GREEKS = ("price", "delta", "vega", "rho", "gamma")
METHODS = ("lr", "pathwise")
_PATHWISE_OK = {"call", "put", "asian_call", "geometric_asian_call"}
# rows of the kernel's quantities for each method
_ROWS = {"lr": (0, 1, 2, 3, 4), "pathwise": (0, 5, 6, 7, 8)}


class Greeks:
    """Price and sensitivities with their Monte Carlo standard errors.

    Attributes
    ----------
    price, delta, vega, rho, gamma : float
        The estimates (vega and rho per unit of vol / rate, not per 1%).
    stderr : dict[str, float]
        Standard error of each of the five.
    variance : dict[str, float]
        Per-path variance of each estimator (``stderr**2 * n``): the figure
        to compare estimators by.
    method : "lr" or "pathwise"
    estimators : dict[str, str]
        Which estimator produced each Greek ("likelihood ratio", "pathwise",
        "mixed (LR of the pathwise delta)", ...).
    alternatives : dict[str, dict[str, tuple[float, float]]]
        Every estimator the kernel formed in the same run,
        ``{"lr": {"delta": (estimate, stderr), ...}, "pathwise": {...}}``
        ("pathwise" only for payoffs that have one).
    n : int
        Paths simulated.
    info : dict
        The plan (streams, block size, threads, seed) and the inputs.

    Built by :func:`greeks`, not by hand.

    %(greeks_init)s

    Examples
    --------
    %(call_greeks)s
    >>> type(g).__name__, sorted(g.as_dict())
    ('Greeks', ['delta', 'gamma', 'price', 'rho', 'vega'])
    """

    _names: tuple[str, ...] = GREEKS
    sampler = "mc"  # "sobol": randomised quasi-Monte Carlo (finance/_qmc.py)
    n_randomizations = None

    @staticmethod
    def _value(v: Any) -> Any:
        return float(v)

    def __init__(self, values: dict[str, Any], stderr: dict[str, Any], variance: dict[str, Any],
                 method: str, estimators: dict[str, str],
                 alternatives: dict[str, dict[str, tuple[float, float]]], n: int,
                 info: dict[str, Any]) -> None:
        for k in self._names:
            setattr(self, k, self._value(values[k]))
        self.stderr = dict(stderr)
        self.variance = dict(variance)
        self.method = method
        self.estimators = dict(estimators)
        self.alternatives = alternatives
        self.n = int(n)
        self.info = dict(info)

    def as_dict(self) -> dict[str, Any]:
        """{greek: estimate}.

        Returns
        -------
        dict of str to float

        Examples
        --------
        %(call_greeks)s
        >>> g.as_dict()["price"] == g.price
        True
        """
        return {k: getattr(self, k) for k in self._names}

    def z_scores(self, exact: Mapping[str, float]) -> dict[str, Any]:
        """(estimate - exact) / stderr for each greek in ``exact``.

        Parameters
        ----------
        exact : mapping of str to float
            Exact values of some of the Greeks (e.g. :func:`black_scholes`).

        Returns
        -------
        dict of str to float

        Raises
        ------
        KeyError
            A name that is not a Greek of this result.
        TypeError
            A value that is not a number.

        Examples
        --------
        %(call_greeks)s
        >>> exact = mc.finance.black_scholes("call", spot=100.0, strike=100.0, rate=0.05, vol=0.2,
        ...                                  maturity=1.0)
        >>> all(abs(z) < 5 for z in g.z_scores(exact).values())
        True
        """
        return {k: (getattr(self, k) - float(v)) / self.stderr[k] for k, v in exact.items()}

    def __repr__(self) -> str:
        lines = [f"Greeks(payoff={self.info.get('payoff')!r}, method={self.method!r}, "
                 f"n={self.n})"]
        for k in GREEKS:
            lines.append(f"  {k:<6} {getattr(self, k):>12.6g} +/- {self.stderr[k]:.3g}"
                         f"   [{self.estimators[k]}]")
        return "\n".join(lines)


def _positive(name: Any, v: Any) -> Any:
    return float(V.check(name, V.as_real_array(name, v), "positive"))


def _check_inputs(payoff: Any, spot: Any, strike: Any, rate: Any, vol: Any, maturity: Any,
                  steps: Any, barrier: Any) -> Any:
    if not isinstance(payoff, str) or payoff not in PAYOFFS:
        raise ValueError(f"payoff must be one of {', '.join(map(repr, PAYOFFS))}, got {payoff!r}")
    for name, v in (("spot", spot), ("strike", strike), ("vol", vol), ("maturity", maturity)):
        if np.ndim(v) != 0:
            raise TypeError(f"{name} must be a scalar real number, got shape {np.shape(v)}")
    spot = _positive("spot", spot)
    strike = _positive("strike", strike)
    vol = _positive("vol", vol)
    maturity = _positive("maturity", maturity)
    if np.ndim(rate) != 0:
        raise TypeError(f"rate must be a scalar real number, got shape {np.shape(rate)}")
    rate = float(V.check("rate", V.as_real_array("rate", rate), "real"))
    steps = V.integer("steps", steps, minimum=1, maximum=10**6)
    if payoff == "up_and_out_call":
        if barrier is None:
            raise ValueError("barrier is required for payoff 'up_and_out_call'")
        if np.ndim(barrier) != 0:
            raise TypeError(f"barrier must be a scalar real number, got shape {np.shape(barrier)}")
        barrier = _positive("barrier", barrier)
        if not barrier > spot:
            raise ValueError(f"barrier must be > spot for an up-and-out option (got barrier="
                             f"{barrier}, spot={spot})")
    elif barrier is not None:
        raise ValueError(f"barrier applies only to 'up_and_out_call', not to {payoff!r}")
    else:
        barrier = math.inf
    return spot, strike, rate, vol, maturity, steps, barrier


def _merge(stats: Any, shifts: Any) -> Any:
    """Per-quantity mean, per-draw variance and n from per-stream sums
    relative to per-stream shifts."""
    count = stats[:, 0]
    n = float(count.sum())
    c0, d = common_shift(count, shifts)                  # (NQ,), (S, NQ)
    G, H = shift_sums(d, count[:, None], stats[:, 1::2], stats[:, 2::2])
    G, H = G.sum(0), H.sum(0)
    mean = c0 + G / n
    var = np.maximum(H - G * G / n, 0.0) / (n - 1)
    return mean, var, n

# The fragments the docstrings above name by %(name)s (see mcscore._docs), filled in
# once, when the module is imported.
_DOC_FRAGMENTS = {
    "greeks_init": """\
Parameters
----------
values : mapping of str to float
    The estimate of each Greek.
stderr, variance : mapping of str to float
    Their standard errors and per-path variances.
method : str
    "lr" or "pathwise".
estimators : mapping of str to str
    The estimator of each Greek.
alternatives : dict
    Every estimator the run formed.
n : int
    Paths simulated.
info : mapping
    The plan and the inputs.

Raises
------
KeyError
    ``values`` without one of the Greeks.""",
    "call_greeks": """\
>>> import mcscore as mc
>>> g = mc.finance.greeks("call", spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0,
...                       n=10_000, rng=0)""",
    "heston_model": """\
>>> import mcscore as mc
>>> model = mc.finance.Heston(v0=0.04, kappa=2.0, theta=0.04, xi=0.3, rho=-0.7)""",
}
_docs.fill_module(globals(), **_DOC_FRAGMENTS)
