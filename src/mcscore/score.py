"""The score-function estimator: :func:`score_grad` (with baselines, and
control variates / antithetic pairs through
:mod:`mcscore.variance_reduction`), :func:`score_grad_from_samples` on the
caller's draws, and :func:`rloo_grad` (k draws per sample)."""
from __future__ import annotations

import math

import numpy as np

from . import _engine as E
from . import _qmc
from . import _validation as V
from . import _vr
from .result import GradientEstimate
from .variance_reduction import score_vr

__all__ = ["score_grad", "score_grad_from_samples", "rloo_grad", "GradientEstimate",
           "default_block_size", "CALLBACK_SIGNATURES"]

default_block_size = E.default_block_size
CALLBACK_SIGNATURES = E.CALLBACK_SIGNATURES
DEFAULT_STREAMS = E.DEFAULT_STREAMS


def score_grad(f, dist, n, *, rng=None, baseline=None, n_threads=None, chunk_size=None,
               n_streams=DEFAULT_STREAMS, block_size=None, control_variates=None,
               antithetic=False, grad_f=None, client=None, progress=False, sampler="mc",
               n_randomizations=None):
    """Score-function estimate of grad_theta E_{x ~ dist}[f(x)].

    Parameters
    ----------
    f : callable, Integrand or scipy.LowLevelCallable
        * a vectorised Python callable: ``f(x)`` with ``x`` of shape
          ``(m, *dist.draw_shape)`` returns shape ``(m,)`` (called chunk by
          chunk, never once per draw; it receives a copy of the draws that it
          may change, whose memory is reused for the next chunk: copy ``x``
          if f keeps it);
        * a built-in integrand from :mod:`mcscore.integrands`, fused into the
          kernel (no array of draws is ever built: O(1) memory in n);
        * a ``scipy.LowLevelCallable`` (numba ``cfunc``, ctypes, Cython) with
          one of the signatures in ``CALLBACK_SIGNATURES``, called from the
          kernel's threads without the GIL on a pointer to one draw.
    dist : Distribution
    n : int >= 2
        Number of draws.
    rng : None, int, SeedSequence or Generator (SPEC 7)
        Seeds the call's streams.  The same int / SeedSequence gives a
        bit-identical result for any ``n_threads`` and ``chunk_size``.
    baseline : None, float, "loo" or "optimal"
        None: plain estimator.  A float b: ``(f - b) * score``.  "loo":
        leave-one-out (RLOO) baseline, unbiased.  "optimal": per coordinate
        the variance-minimising constant ``E[f s^2] / E[s^2]``, cross-fitted
        across streams (each stream's baseline comes from the other
        streams) so the estimate stays unbiased.
    n_threads : None or int
        None = all threads OpenMP would use (OMP_NUM_THREADS and threadpoolctl
        are honoured), -1 = all, -2 = all but one, 0 is an error.
    chunk_size : int, optional
        Draws per call of a Python f (default about 2**18 values).
    n_streams, block_size : int, optional
        The draws are cut into blocks of ``block_size`` draws; block b belongs
        to stream ``b % n_streams``.  The result is a function of (f, dist, n,
        rng, n_streams, block_size) only.  The default block size is a pure
        function of n and the draw size (:func:`default_block_size`).
    control_variates : list, optional
        Control variates, each ``"delta"`` (the delta-method / first-order
        Taylor control variate ``grad_f(mu) . (x - mu)``, mu = E[x]; needs
        ``grad_f``) or a pair ``(h, grad_mean)``: h a vectorised callable
        and grad_mean the gradient of E[h] w.r.t. the parameters (a dict
        ``{name: array}`` or a callable ``dist -> dict``).  The estimator
        averages ``f s - sum_j beta_j (h_j s - grad E[h_j])`` with per
        coordinate variance-minimising coefficients beta, cross-fitted
        across streams (unbiased); with ``baseline="optimal"`` the
        baseline is fitted jointly with them.
    antithetic : bool
        Draw antithetic pairs (x, x') for symmetric families (Normal: x' =
        2 loc - x; LogNormal: the same for log x) and average each pair's
        terms; n counts draws (n // 2 pairs).  ``variance`` is then
        stderr**2 * n (per draw, comparable with the plain estimator).
    grad_f : callable, optional
        Vectorised gradient of f (shape of x), for ``"delta"``.
    client : dask.distributed.Client, optional
        Run the streams on the Dask cluster behind ``client`` (see
        :mod:`mcscore.distributed`): the result is bit-identical to the local
        run with the same (f, dist, n, rng, n_streams, block_size).  f must
        be an Integrand or a picklable Python callable.  On a worker,
        ``n_threads`` is resolved there (Dask workers set OMP_NUM_THREADS=1).
    progress : bool
        Show a tqdm progress bar (blocks done, draws per second).  It does
        not change the result.
    sampler : "mc" or "sobol"
        "sobol": randomised quasi-Monte Carlo, draws by inversion of
        scrambled Sobol' points (see :mod:`mcscore._qmc` and the README):
        ``n`` draws in total, ``n_randomizations`` (default 32) independent
        randomisations of ``n // n_randomizations`` points each (a power of
        two, else a warning); the estimate is the mean of the
        randomisations' estimates and ``stderr`` comes from their spread.
        Baselines and control-variate coefficients are fitted across
        randomisations (leave one randomisation out); ``chunk_size``,
        ``n_streams``, ``block_size`` and ``progress`` do not apply.  The
        result has ``sampler == "sobol"`` and ``n_randomizations``;
        ``variance`` is ``stderr**2 * n``, the per-draw variance plain Monte
        Carlo would need for the same error bar.
    n_randomizations : int >= 2, optional
        Only with sampler="sobol".

    Returns
    -------
    GradientEstimate
    """
    E.check_distribution(dist)
    baseline = E.check_baseline(baseline)
    if grad_f is not None and not callable(grad_f):
        raise TypeError(f"grad_f must be a vectorised Python callable, got {type(grad_f).__name__}")
    if _qmc.check_sampler(sampler) == "sobol":
        return _qmc.score_grad(f, dist, n, rng=rng, baseline=baseline,
                               control_variates=control_variates, antithetic=antithetic,
                               grad_f=grad_f, n_threads=n_threads,
                               n_randomizations=n_randomizations, client=client)
    _qmc.check_mc_only(sampler, n_randomizations)
    if control_variates is not None or antithetic is not False:
        return score_vr(f, dist, n, rng=rng, baseline=baseline,
                        control_variates=control_variates, antithetic=antithetic,
                        grad_f=grad_f, n_threads=n_threads, chunk_size=chunk_size,
                        n_streams=n_streams, block_size=block_size, client=client)
    fkind, kf = E.lower_f(f, dist)
    E.check_differentiable(dist)
    kd = dist._kernel_dist()
    plan = E.Plan(n, kd.draw_size, rng, n_streams, block_size, n_threads)
    bar = E.progress_bar(progress, plan)
    try:
        if client is not None:
            stats, shifts = E.run_on_dask(client, f, fkind, dist, kd, plan, n_threads=n_threads,
                                          chunk_size=chunk_size, progress=bar)
        elif fkind == "python":
            stats, shifts = E.run_job(E.ScoreJob(f, dist), plan, chunk_size, progress=bar)[:2]
        else:
            stats, shifts = E.run_fused(kf, fkind, dist, kd, plan, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return E.finish_score(dist, kd, stats, shifts, baseline, {**plan.info(), "f": fkind})


def _samples_rare_floor(dist, x, fx, S, baseline):
    """rare_floor for score_grad_from_samples: the per-category sums of m
    Categorical draws x with values fx laid out as one stream of kernel
    statistics; the floor of each coordinate's per-draw variance of the
    baselined terms, or None when no category is rare."""
    kd = dist._kernel_dist()
    if not kd.per_category:
        return None
    m = len(fx)
    g = fx - fx[0]
    ind = x.reshape(m, kd.n_units)[:, :, None] == np.arange(kd.n_cat)
    cat = np.stack([ind.sum(0), np.tensordot(g, ind, 1), np.tensordot(g * g, ind, 1)], -1)
    stats = np.concatenate([[m, g.sum(), g @ g], cat.ravel()])[None]
    floor = E.rare_floor(dist, kd, stats, fx[:1], float(m))
    if floor is None:
        return None
    factor = 1.0
    if baseline is None:
        b = 0.0
    elif baseline == "loo":  # f_i - mean of the others = (f_i - mean) m / (m - 1)
        b, factor = fx.mean(), m / (m - 1)
    elif baseline == "optimal":  # about E[f s^2] / E[s^2] per coordinate
        s2 = S * S
        b = np.where(s2.sum(0) > 0, (fx @ s2) / s2.sum(0), fx.mean())
    else:
        b = baseline
    return floor(fx[0] - b, g.mean(), (g @ g) / m) * factor**2


def score_grad_from_samples(dist, x, fx, *, baseline=None):
    """The estimator algebra on draws the caller made.

    Parameters
    ----------
    dist : Distribution
        The distribution x was drawn from.
    x : array, shape (m, *dist.draw_shape)
    fx : array, shape (m,)
        f at each draw (returns, rewards, simulator outputs).
    baseline : None, float, "loo" or "optimal"
        As in :func:`score_grad`; "optimal" uses an exact leave-one-out
        per-coordinate baseline, so it stays unbiased.
    """
    return samples_estimate(dist, x, fx, baseline, in_support=False)


def samples_estimate(dist, x, fx, baseline, in_support):
    """score_grad_from_samples; ``in_support=True`` when the caller has
    already found every log_prob of x finite (vi.elbo_grad: log q at q's own
    draws), which skips computing it a second time."""
    E.check_distribution(dist)
    baseline = E.check_baseline(baseline)
    x = dist._check_x(x)
    m = x.shape[0]
    if m < 2:
        raise ValueError(f"x must hold at least 2 draws, got {m}")
    V.reject_masked("fx", fx)
    fx_arr = np.asarray(fx) if fx is not None else None
    if fx_arr is None or fx_arr.dtype.kind not in "biuf":
        raise TypeError(f"fx must be an array of real numbers, got "
                        f"{'None' if fx_arr is None else fx_arr.dtype}")
    if fx_arr.shape != (m,):
        raise ValueError(f"fx must have shape ({m},) to match x, got {fx_arr.shape}")
    fx_arr = fx_arr.astype(np.float64)
    if not np.isfinite(fx_arr).all():
        i = int(np.argmax(~np.isfinite(fx_arr)))
        raise ValueError(f"fx[{i}] = {fx_arr[i]} is not finite")
    lp = None if in_support else dist.log_prob(x)
    if lp is not None and not np.isfinite(lp).all():
        i = int(np.argmax(~np.isfinite(lp.reshape(m, -1)).all(axis=1)))
        raise ValueError(f"x[{i}] is outside the support of {dist!r}")
    sc = dist._score(x)  # the support was checked just above
    names = list(sc)
    S = np.concatenate([sc[k].reshape(m, -1) for k in names], axis=1)
    y = E.baselined_terms(fx_arr, S, baseline)
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        grad = y.mean(0)
        var = y.var(0, ddof=1)
        floor = _samples_rare_floor(dist, x, fx_arr, S, baseline)
        if floor is not None:
            var = np.maximum(var, floor)
        se = np.sqrt(var / m)
        vvar = float(fx_arr.var(ddof=1))
        g = fx_arr - fx_arr[0]
        f_underflow = (float(np.mean(np.square(g))) < E.TINY_MEAN_SQUARE
                       and abs(float(g.mean())) > E.RESOLUTION)
    E.check_range(dist, grad, var, float(fx_arr.mean()), vvar, f_underflow)
    out = {}
    for part in (grad, se, var):
        d, o = {}, 0
        for k in names:
            size = sc[k][0].size
            d[k] = part[o: o + size].reshape(sc[k].shape[1:])
            o += size
        out[len(out)] = d
    return GradientEstimate(out[0], out[1], out[2], fx_arr.mean(), math.sqrt(vvar / m), m,
                            baseline=baseline, method="score", value_variance=vvar,
                            info={"f": "samples"})



def rloo_grad(f, dist, n, *, k=4, rng=None, n_threads=None, chunk_size=None,
              n_streams=E.DEFAULT_STREAMS, client=None):
    """Leave-one-out score estimator with ``k`` draws per sample (RLOO):

        g = 1/k sum_i (f(x_i) - 1/(k-1) sum_{j != i} f(x_j)) s(x_i)

    unbiased for any family, no gradient of f needed.  ``n`` is the number
    of samples (f is evaluated k n times); ``variance`` is per sample.

    Parameters
    ----------
    f : vectorised Python callable, as in ``score_grad``
    dist : any mcscore distribution
    k : int >= 2
    client : dask.distributed.Client, optional
        Run on Dask, bit-identical to the local run (as in ``score_grad``).
    """
    E.check_distribution(dist)
    f = E.check_callable("f", f)
    k = V.integer("k", k, minimum=2, maximum=1 << 12)
    n = V.integer("n", n, minimum=2, maximum=2**62 // k)
    E.check_differentiable(dist)
    ds = dist._kernel_dist().draw_size
    bs = E.default_block_size(n * k, ds, V.integer("n_streams", n_streams, minimum=1))
    bs = k * max(1, bs // k)
    plan = E.Plan(n * k, ds, rng, n_streams, bs, n_threads)
    job = RlooJob(f, dist, k)
    stats, shifts, offsets, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                        n_threads=n_threads)
    grand, se, var, value, vse, vvar, nn, _ = E.estimate(
        dist, stats, shifts, job.P, 1, [1.0], offsets=offsets, terms="(f - f_loo) * score",
        mag=mag)
    return E.gradient_estimate(dist, grand, se, var, value, vse, vvar, nn, f"rloo(k={k})",
                               {**plan.info(), "f": "python", "f_evals_per_sample": k})


class RlooJob(E.Job):
    """RLOO: draws of the family; f; the score kernel's leave-one-out terms
    over each group of k consecutive draws (f shifted per stream)."""

    offset_rows = 1

    def __init__(self, f, dist, k):
        self.f, self.dist, self.k = f, dist, k
        self.what = f"rloo_grad(k={k})"
        self.width = dist._kernel_dist().draw_size
        self.table = E.score_table(dist)
        self.P = len(self.table[0]) - 1

    def buffers(self, R, B):
        return np.empty((R, self.width * B))

    def draw(self, rd, bitgens, threads, xt, shared=False):
        self.prepare(rd, bitgens, threads, xt, _vr.PREP_DRAW, np.zeros(1))

    def evaluate(self, rd, xt, chunk, mag):
        dist = self.dist
        xu = dist._to_user_dtype(self.gathered(rd, xt, self.width).reshape((rd.total,) +
                                                                  dist.draw_shape))
        F = self.padded("F", 1, rd)
        if rd.consecutive:  # the round's draws are the first total slots of F
            mag.see(E.call_values(self.f, xu, rd, chunk, out=F[0, :rd.total]))
        else:
            F[0, rd.index] = mag.see(E.call_values(self.f, xu, rd, chunk))
        return F, [F]

    def accumulate(self, rd, xt, F, threads, stats, shifts):
        R = len(rd.blocks)
        _vr.acc_score(*self.table, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads,
                      self.width, xt[:R], xt[:R], F, F, False, False, self.k, stats, shifts)
