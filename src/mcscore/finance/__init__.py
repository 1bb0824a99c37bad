"""Likelihood-ratio sensitivities of options: built-in payoffs of one asset,
any payoff of the paths of several correlated assets, the Heston model.

The seven built-in payoffs (``PAYOFFS``) of one asset run in one fused
kernel, described first below.  A payoff of whole paths (a vectorised Python
function, a C callback or a :class:`Payoff`) on one or several correlated
geometric Brownian motions with dividend yields, or on a :class:`Heston`
model, runs in the path engine described in :func:`greeks` ("Any payoff,
several assets"): paths and weights are simulated and summed in Cython,
the payoff is evaluated on whole blocks of paths.

The price of a derivative is E[e^{-rT} h(S)] over paths of

    S_k = S_{k-1} exp((r - sigma^2/2) dt + sigma sqrt(dt) Z_k),  k = 1..steps,

and its sensitivities (the Greeks) are derivatives of that expectation with
respect to the spot S0, the volatility sigma and the rate r.  The
likelihood-ratio method (Glasserman, *Monte Carlo Methods in Financial
Engineering*, 2003, section 7.3) differentiates the path density instead of
the payoff, so it needs no smoothness of h: digitals and barriers are fine.
With a = sigma sqrt(dt) and W_T = sqrt(dt) sum Z_k the weights are

    delta  Z_1 / (S0 a)
    vega   sum_k (Z_k^2 - 1) / sigma - W_T
    rho    W_T / sigma - T          (the -T is the discount factor's)
    gamma  ((Z_1^2 - 1) / a^2 - Z_1 / a) / S0^2      (second-order LR)

Only the first step's density depends on S0, so the delta and gamma weights
grow like 1/sqrt(dt) and 1/dt as ``steps`` grows: with many monitoring dates
prefer ``method="pathwise"`` where it applies.

``method="pathwise"`` differentiates the payoff along the path instead
(lower variance, needs a Lipschitz payoff: calls, puts, Asians), with gamma
from the *mixed* estimator that applies the likelihood ratio to the pathwise
delta: e^{-rT} dh/dS0 (Z_1 / a - 1) / S0.

Each estimate is the mean of one per-path quantity (the discounted payoff
times its weight, the -T of rho included per path), so its standard error
is the sample standard deviation of that quantity over sqrt(n), merged
exactly from per-stream shifted sums; no estimator combines separately
averaged sums, so no covariance terms arise.

Every path is simulated inside a fused, parallel Cython kernel
(``mcscore._finance``) and never stored; the per-stream sums make the result
bit-identical for any number of threads, as in :func:`mcscore.score_grad`.

    >>> import mcscore as mc
    >>> g = mc.finance.greeks("call", spot=100, strike=100, rate=0.05, vol=0.2,
    ...                       maturity=1.0, n=10**6, rng=0)
    >>> g.delta, g.stderr["delta"]          # doctest: +SKIP
"""
from ._builtin import greeks
from ._common import GREEKS, METHODS, PAYOFFS, Greeks
from ._paths import Diffusion, Heston, PathGreeks, SpotGreeks
from .closed_forms import black_scholes, geometric_asian_call, heston_call, reference
from .payoffs import (PATH_GREEKS, Payoff, basket_call, basket_put, best_of_call, exchange,
                      geometric_basket_call, spread_call, worst_of_call)

__all__ = ["greeks", "Greeks", "METHODS", "PathGreeks", "Payoff", "black_scholes", "geometric_asian_call",
           "reference", "PAYOFFS", "GREEKS", "PATH_GREEKS", "Heston", "Diffusion", "SpotGreeks",
           "heston_call", "basket_call", "basket_put",
           "geometric_basket_call", "spread_call", "exchange", "best_of_call", "worst_of_call"]
