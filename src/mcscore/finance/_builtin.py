"""The seven built-in payoffs of one asset under Black-Scholes, in one fused,
parallel kernel (``mcscore._finance.run_paths``), and :func:`greeks`, the
entry point that sends any other payoff to the path engine."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .. import _engine as E
from .. import _qmc as Q
from .. import _finance as F
from .. import _validation as V
from .._config import effective_n_threads
from .._progress import current, done, simple_bar
from ..distributed import map_streams
from ._common import GREEKS, Greeks, METHODS, PAYOFFS, _PATHWISE_OK, _ROWS, _check_inputs, _merge
from ._paths import Diffusion, Heston, _greeks_paths
from .payoffs import Payoff
from . import _qmc


def _paths(inputs: Any, plan: Any, streams: Any, threads: Any) -> Any:
    """Simulate the paths of the given streams in the fused kernel; returns
    (streams, stats rows, shifts, error code)."""
    streams = np.ascontiguousarray(streams, dtype=np.int64)
    stats = np.zeros((len(streams), 1 + 2 * F.N_QUANTITIES))
    shifts = np.zeros((len(streams), F.N_QUANTITIES))
    code = F.run_paths(*inputs, plan.bitgens(streams), streams, plan.n, plan.n_streams,
                       plan.block_size, threads, stats, shifts)
    return streams, stats, shifts, code


def _paths_task(inputs: Any, plan: Any, streams: Any, n_threads: Any) -> Any:
    """_paths on a Dask worker (threads resolved there)."""
    return _paths(inputs, plan, streams,
                  effective_n_threads(n_threads, work_items=len(streams)))


def greeks(payoff: str | Payoff | Callable[..., Any], *,
           spot: float | Sequence[float] | NDArray[Any],
           strike: float | Sequence[float] | NDArray[Any] | None = None, rate: float | None = None,
           vol: float | Sequence[float] | NDArray[Any] | None = None,
           maturity: float | None = None, n: int | None = None, steps: int = 1,
           barrier: float | None = None,
           rng: int | np.random.SeedSequence | np.random.Generator | None = None,
           method: str = "lr", n_threads: int | None = None, n_streams: int = E.DEFAULT_STREAMS,
           block_size: int | None = None, client: Any = None, dividend: ArrayLike | None = None,
           correlation: ArrayLike | None = None, payoff_grad: Callable[..., Any] | None = None,
           model: Heston | Diffusion | None = None, expiries: ArrayLike | None = None,
           strikes: Sequence[float] | NDArray[Any] | None = None, sampler: str = "mc",
           n_randomizations: int | None = None, progress: bool = False,
           preintegrate: bool = False) -> Greeks:
    """Monte Carlo price, delta, vega, rho and gamma of an option under GBM.

    ``payoff`` may also be a function of the simulated paths (or a C
    callback), on one asset or several: see "Any payoff, several assets"
    below.

    Parameters
    ----------
    payoff : str, callable, Payoff or scipy.LowLevelCallable
        A built-in name: ``"call"``, ``"put"`` (on S_T), ``"digital_call"``, ``"digital_put"``
        (cash-or-nothing, pays 1 when S_T > K, resp. < K),
        ``"asian_call"`` (on the arithmetic average of S at the ``steps``
        dates T/steps, 2T/steps, ..., T), ``"geometric_asian_call"`` (on their
        geometric average), ``"up_and_out_call"`` (a call that dies when S
        reaches ``barrier`` at one of the ``steps`` monitoring dates).
    spot, strike, vol, maturity : float > 0
    rate : float
        Continuously compounded risk-free rate (also the drift).
    n : int >= 2
        Paths.
    steps : int >= 1
        Time steps (= monitoring / averaging dates).
    barrier : float > spot
        Only for ``"up_and_out_call"``.
    rng : None, int, SeedSequence or Generator
        Seeds the call's streams (as in :func:`mcscore.score_grad`).
    method : "lr" or "pathwise"
        "lr": every Greek by the likelihood ratio (gamma by the second-order
        likelihood ratio).  "pathwise": delta, vega and rho by pathwise
        differentiation and gamma by the mixed estimator (likelihood ratio of
        the pathwise delta); only for payoffs that are Lipschitz in the path
        (call, put, asian_call, geometric_asian_call).
    n_threads, n_streams, block_size
        As in :func:`mcscore.score_grad`; the result depends on (inputs, n,
        rng, n_streams, block_size) only, never on the thread count.

    dividend, correlation, payoff_grad
        See below.  A built-in name with any of them (``dividend=0.0``
        included) runs in the path engine and also gets theta and the
        dividend sensitivity (a :class:`PathGreeks`).
    expiries, strikes
        A grid in one pass: see "A grid in one pass" below.
        See below (not for the built-in names).
    sampler : "mc" or "sobol"
        "sobol": randomised quasi-Monte Carlo, the paths from scrambled
        Sobol' points by the Brownian bridge (the first dimensions give
        W(T), then ever finer midpoints; with several assets, each level of
        the bridge for every asset before the next level); ``n`` paths in
        total over ``n_randomizations`` (default 32) independent
        scramblings, stderr from their spread (see mcscore.score_grad).
        Built-in payoffs and payoffs of paths under geometric Brownian
        motion (not Heston / Diffusion models, nor C callbacks).
    n_randomizations : int >= 2, optional
        Only with sampler="sobol".
    preintegrate : bool
        Only with sampler="sobol" and a built-in name (default False).  Each
        path's quantities are integrated exactly over W(T) given the other
        Brownian bridge coordinates: with the bridge, every S(t_k) is
        c_k exp(b_k z) in the first coordinate z (W(T) = sqrt(T) z), the
        payoff is non-zero on an interval of z (the strike's root; for
        "asian_call" the arithmetic average's, by Newton's method; the
        barrier's for "up_and_out_call"), and every weight is a polynomial
        of degree <= 2 in z, so the integral over z is a sum of moments of
        shifted normals over that interval, in closed form.  What is left
        for the Sobol' points is a smooth function of the other
        coordinates: no kink, no jump, so the error falls far faster (a
        12-date Asian call's pathwise delta: about 100 x smaller stderr than
        plain Sobol' at 32 x 4096 paths).  Every Greek of both methods keeps
        its estimator; the estimate stays unbiased in each randomisation,
        the stderr comes from the spread of the randomisations as always.
        A quantity depending on W(T) alone (one date, or the price of a
        call at any number of dates) comes out exact to rounding, with a
        stderr of about 0.  The points are scrambled Sobol' points made in
        mcscore (scipy's direction numbers, a random linear matrix
        scrambling and digital shift, 52 bits), several randomisations
        worked together: bit-identical for any ``n_threads``, but not the
        points of ``preintegrate=False``.
    progress : bool
        Show a progress bar over the paths (tqdm when installed, plain
        lines on stderr otherwise), as every estimator's ``progress``; the
        bar does not change the results.  Default False.
    model : None, Heston or Diffusion
        None: geometric Brownian motion(s) with ``vol``.  A :class:`Heston`
        model (one asset, no ``vol``): price, delta and gamma (a
        :class:`SpotGreeks`), and with ``Heston(..., param_greeks=True)``
        the sensitivities to v0, kappa, theta, xi and rho.  A :class:`Diffusion` (one asset, Euler steps,
        likelihood ratio only): price, delta, gamma and one Greek per model
        parameter, named after it.

    Returns
    -------
    Greeks
        ``.price``, ``.delta``, ``.vega``, ``.rho``, ``.gamma`` and
        ``.stderr[name]``; ``.alternatives`` holds the other method's
        estimates from the same paths.  (A :class:`PathGreeks`, with theta
        and the dividend sensitivity as well, for the path engine.)

    Raises
    ------
    TypeError
        A required market input missing (``vol``, ``rate``, ...) or ``n``
        not an integer.
    ValueError
        An unknown payoff name, an input outside its range (``vol`` <= 0,
        ...), ``method="pathwise"`` for a discontinuous payoff or without
        a payoff derivative, or a payoff returning the wrong shape or
        non-finite values.

    Notes
    -----
    **Any payoff, several assets.**
    ``payoff`` a vectorised Python function ``payoff(paths) -> (m,)`` of a
    block of m simulated paths, ``paths[p, k, i]`` = S_i(t_k) for
    t_k = k T / steps, k = 0..steps (k = 0 is the spot), i the asset: shape
    ``(m, steps + 1, assets)`` (the last axis has length 1 for one asset;
    the array is read-only and reused between calls).  It is called block by
    block, never per path.  Or a ``scipy.LowLevelCallable`` with one of the
    signatures of :func:`mcscore.score_grad` (``CALLBACK_SIGNATURES``),
    called per path on the path flattened time-major, ``x[k * assets + i]``,
    ``d = (steps + 1) * assets``.  Or a :class:`Payoff` (the factories
    :func:`basket_call`, :func:`spread_call`, :func:`best_of_call`, ...),
    which carries its own derivative.

    spot, vol, dividend: a scalar (one asset) or one value per asset (a
    scalar vol or dividend is used for every asset); dividend is the
    continuous yield q_i (default 0).  correlation: the assets' (assets x
    assets) correlation matrix C, symmetric positive definite with unit
    diagonal (default identity).  The model, with C = L L^T and Z_k iid
    standard normal vectors, X_k = L Z_k,::

        log S_i(t_k) = log S_i(t_{k-1}) + mu_i dt + a_i X_ki,
        mu_i = r - q_i - sigma_i^2 / 2,   a_i = sigma_i sqrt(dt).

    Each increment is Gaussian, N(mu dt, dt diag(sigma) C diag(sigma)), and
    the likelihood-ratio weights are the Gaussian scores of the increments
    (Glasserman 2003, ch. 7), with xi_k = C^{-1} X_k = L^{-T} Z_k::

        delta_i    xi_1i / (S0_i a_i)
        gamma_ij   (xi_1i xi_1j - (C^{-1})_ij - [i = j] a_i xi_1i) / (a_i a_j S0_i S0_j)
        vega_i     sum_k (X_ki xi_ki - 1) / sigma_i - sqrt(dt) xi_ki
        rho        sqrt(dt) sum_k sum_i xi_ki / sigma_i - T
        theta      -(sum_k (|Z_k|^2 - assets) / (2T)
                     + (sqrt(dt) / T) sum_k sum_i mu_i xi_ki / sigma_i - r)

    each multiplying the discounted payoff (theta = -dV/dT with ``steps``
    fixed, the dates moving with T; rho and theta include the discount
    factor's -T and +r).  Cross-gammas are ``gamma[i, j]``.

    ``method="pathwise"`` needs the payoff's derivative along the path,
    ``payoff_grad(paths) -> dh/dS`` of the shape of paths (or a
    :class:`Payoff` that has one); then dS_i(t_k)/dS0_i = S_i(t_k)/S0_i,
    dS/dsigma_i = S (W_i(t_k) - sigma_i t_k), dS/dr = S t_k,
    dS/dT = S (mu_i t_k + sigma_i W_i(t_k) / 2) / T, and gamma is the mixed
    estimator E[delta_j^pw (score_i - [i = j] / S0_j)], symmetrised.
    Without a derivative, pathwise is refused.  The dividend sensitivity
    ``dividend`` (dV/dq_i) has the likelihood-ratio weight
    -sqrt(dt) sum_k xi_ki / sigma_i and pathwise dS_i(t)/dq_i = -t S_i(t).

    GBM paths are simulated and summed in parallel (``n_threads``), in
    rounds of consecutive blocks, the payoff called once per round; the
    result depends on (inputs, n, rng, n_streams, block_size) only, never on
    the thread count, and ``client`` (Dask) runs groups of streams on the
    workers with the same result (a picklable payoff; not for a
    LowLevelCallable).  Heston paths run in the same parallel engine;
    Diffusion paths (Python drift and diffusion) run on one thread, locally.

    **A grid in one pass.**
    Payoffs priced on the same paths: a :class:`Payoff` declaring
    ``grid=shape`` returns ``(m,) + shape`` (and its gradient ``(m,) +
    shape + (steps + 1, assets)``); or give ``expiries``, an array of times
    on the time grid (k maturity / steps, k = 1..steps), and a payoff
    function returning ``(m,) + expiries.shape``.  Column j of a grid
    expires at ``expiries`` broadcast to the grid (default: maturity): it is
    discounted at that date and its weights are the sums over the steps up
    to it (rho and theta at that maturity, the dates k dt moving with it),
    so the payoff of column j must read the paths only up to its expiry.
    Every Greek of the result has the grid's shape in front (price
    ``shape``, delta ``shape + (assets,)``, gamma ``shape + (assets,
    assets)``).  Built-in names: ``strikes`` (a 1-D array, instead of
    ``strike``) and/or ``expiries`` (1-D) give the grid (expiries, strikes);
    "asian_call" at an expiry averages the dates up to it.

    Examples
    --------
    >>> import mcscore as mc
    >>> market = dict(spot=100.0, strike=100.0, rate=0.05, vol=0.2, maturity=1.0)
    >>> g = mc.finance.greeks("call", n=10_000, rng=0, **market)
    >>> exact = mc.finance.black_scholes("call", **market)
    >>> bool(abs(g.delta - exact["delta"]) < 5 * g.stderr["delta"])
    True
    >>> sorted(g.stderr)[:3]
    ['delta', 'gamma', 'price']
    """
    if progress is not False:  # run under a bar that the path engine's rounds move
        kw = {k: v for k, v in locals().items() if k not in ("payoff", "progress")}
        if V.flag("progress", progress):
            with current(simple_bar(max(int(n) if isinstance(n, (int, np.integer)) else 0, 0),
                                    True, "greeks")):
                out = greeks(payoff, progress=False, **kw)
                done(out.n)
            return out
    if strikes is not None:
        if not isinstance(payoff, str):
            raise ValueError("strikes (a strike grid) applies to the built-in payoff names; a "
                             "payoff function declares its grid with Payoff(fn, grid=...)")
        if strike is not None:
            raise ValueError("give strike (one strike) or strikes (a grid), not both")
        if np.ndim(strikes) != 1 or np.size(strikes) < 1:
            raise ValueError(f"strikes must be a non-empty 1-D array of strikes, got shape "
                             f"{np.shape(strikes)}")
        strike = strikes
    path = (not isinstance(payoff, str) or strikes is not None
            or any(v is not None for v in (dividend, correlation, payoff_grad, model, expiries)))
    given = dict(strike=strike, rate=rate, vol=vol, maturity=maturity)
    needed = ("strike", "rate", "vol", "maturity") if not path else (
        ("rate", "maturity") if model is not None else ("rate", "vol", "maturity"))
    missing = [k for k in needed if given[k] is None]
    if missing:
        raise TypeError("greeks() missing required keyword argument(s): "
                        + ", ".join(map(repr, missing)))
    if Q.check_sampler(sampler) == "sobol":
        if strikes is not None or expiries is not None:
            raise ValueError("sampler='sobol' prices one strike at one maturity; use "
                             "sampler='mc' for a grid of strikes or expiries in one pass")
        V.engine_sizes(None, n_streams, block_size)
        return _qmc.greeks(payoff, spot=spot, strike=strike, rate=rate, vol=vol,
                           maturity=maturity, n=n, steps=steps, barrier=barrier, rng=rng,
                           method=method, n_threads=n_threads, client=client,
                           n_randomizations=n_randomizations, path=path, dividend=dividend,
                           correlation=correlation, payoff_grad=payoff_grad, model=model,
                           preintegrate=preintegrate)
    Q.check_mc_only(sampler, n_randomizations)
    if V.flag("preintegrate", preintegrate):
        raise ValueError("preintegrate=True applies only to sampler='sobol'")
    if path:
        return _greeks_paths(payoff, spot=spot, strike=strike, rate=rate, vol=vol,
                             maturity=maturity, n=n, steps=steps, barrier=barrier, rng=rng,
                             method=method, n_streams=n_streams, block_size=block_size,
                             client=client, dividend=dividend, correlation=correlation,
                             payoff_grad=payoff_grad, model=model, expiries=expiries,
                             n_threads=n_threads)
    spot, strike, rate, vol, maturity, steps, barrier = _check_inputs(
        payoff, spot, strike, rate, vol, maturity, steps, barrier)
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be 'lr' or 'pathwise', got {method!r}")
    if method == "pathwise" and payoff not in _PATHWISE_OK:
        raise ValueError(
            f"method='pathwise' does not apply to {payoff!r}: its payoff is discontinuous "
            "(the pathwise derivative is zero almost surely and misses the jump); use "
            "method='lr'")
    plan = E.Plan(n, steps, rng, n_streams, block_size, n_threads)
    inputs = (PAYOFFS.index(payoff), spot, strike, rate, vol, maturity, barrier, steps)
    if client is None:
        _, stats, shifts, code = _paths(inputs, plan, np.arange(plan.used), plan.threads)
    else:
        stats = np.zeros((plan.used, 1 + 2 * F.N_QUANTITIES))
        shifts = np.zeros((plan.used, F.N_QUANTITIES))
        codes = []

        def on_result(res: Any) -> Any:
            streams, rows, sh, c = res
            stats[streams], shifts[streams] = rows, sh
            codes.append(c)

        map_streams(client, plan, _paths_task, (inputs, plan), (n_threads,),
                    n_threads=n_threads, n_tasks=None, kind="paths", on_result=on_result)
        code = max(codes, default=0)
    if code == 4:
        raise MemoryError("could not allocate the path kernels' block buffers")
    with np.errstate(over="ignore", invalid="ignore"):
        mean, var, nn = _merge(stats, shifts)
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise FloatingPointError(
            f"the simulated prices overflowed (spot={spot}, rate={rate}, vol={vol}, "
            f"maturity={maturity}: S0 exp((rate - vol^2/2) t + vol W_t) leaves the range of "
            "a double); the estimates would be inf or NaN")
    se = np.sqrt(var / nn)
    alternatives = {}
    for m in METHODS:
        if m == "pathwise" and payoff not in _PATHWISE_OK:
            continue
        alternatives[m] = {g: (float(mean[r]), float(se[r])) for g, r in zip(GREEKS, _ROWS[m])}
    rows = _ROWS[method]
    values = {g: mean[r] for g, r in zip(GREEKS, rows)}
    stderr = {g: float(se[r]) for g, r in zip(GREEKS, rows)}
    variance = {g: float(var[r]) for g, r in zip(GREEKS, rows)}
    if method == "lr":
        est = {"price": "plain", "delta": "likelihood ratio", "vega": "likelihood ratio",
               "rho": "likelihood ratio", "gamma": "second-order likelihood ratio"}
    else:
        est = {"price": "plain", "delta": "pathwise", "vega": "pathwise", "rho": "pathwise",
               "gamma": "mixed (LR of the pathwise delta)"}
    info = plan.info()
    info.update(payoff=payoff, spot=spot, strike=strike, rate=rate, vol=vol, maturity=maturity,
                steps=steps, barrier=None if math.isinf(barrier) else barrier)
    return Greeks(values, stderr, variance, method, est, alternatives, int(nn), info)
