"""Randomised quasi-Monte Carlo (``sampler="sobol"``).

Draws are made by inversion of scrambled Sobol' points: each of R
independent randomisations (``n_randomizations``) is a scipy.stats.qmc.Sobol
sequence (Joe and Kuo's direction numbers, linear matrix scrambling plus a
digital shift, 32 or 52 bits: see _BITS) seeded from the call's SeedSequence, its points are
turned into draws by the family's inverse cdf (``Distribution._qmc_draws``)
and each randomisation gives an unbiased estimate.  The reported estimate is
the mean of the R estimates and its standard error their sample standard
deviation over sqrt(R): never the within-sequence variance, which is not a
variance of anything for dependent points.

Baselines and control-variate coefficients are fitted across
randomisations: the coefficient used in randomisation r comes from the
other R - 1 randomisations only (leave-one-randomisation-out), so each
randomisation's estimate stays unbiased (the points inside one sequence are
dependent, so a leave-one-point-out baseline would not be).

``n`` is the total number of draws: R randomisations of m = n // R points
each (a warning when m is not a power of two, where the Sobol' balance
properties are lost, or when n is not a multiple of R).  The randomisations
are independent units of work: threads (and Dask workers) take whole
randomisations and the results are put back in randomisation order, and the
points of one randomisation are always summed in the same chunks in the same
order, so the result is bit-identical for any ``n_threads`` and on Dask.
"""
from __future__ import annotations

import math
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _kernels as K
from . import _validation as V
from ._callables import call_f, call_grad, lower_f
from ._config import effective_n_threads
from .integrands import Integrand
from .result import GradientEstimate

__all__ = ["SAMPLERS", "DEFAULT_RANDOMIZATIONS", "QMCWarning", "score_grad", "pathwise_grad",
           "elbo_grad"]

SAMPLERS = ("mc", "sobol")
# 32 rather than 16: with discrete families or discontinuous f the estimates
# of the randomisations are lumpy, and 16 of them underestimate the spread
# too often (mean z^2 up to 1.7 over 200 repeats; about 1.1 with 32 and a few
# hundred points each)
DEFAULT_RANDOMIZATIONS = 32
MAX_DIM = 21201  # scipy's Sobol' direction numbers
# Bits of the points: u = k / 2**b + 2**-(b + 1) lies in (0, 1) exactly.  The
# scrambling costs O(d b**3) per randomisation, so up to 2**14 points per
# randomisation b = 32 (each quantile is then taken at most 2**-33 in
# probability from its exact place, far below any error bar such a run can
# reach) and b = 52 beyond (a double's resolution of u).
_BITS_SMALL, _BITS = 32, 52
_SMALL_M = 1 << 14
_CHUNK_VALUES = 1 << 18  # uniforms per chunk (a power of two of points)
_WARNINGS_LOCK = threading.Lock()


class QMCWarning(UserWarning):
    """A quasi-Monte Carlo call whose point count loses the Sobol' balance.

    Examples
    --------
    >>> import warnings
    >>> import mcscore as mc
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     res = mc.score_grad(lambda x: x, mc.Normal(0.0, 1.0), 1000, rng=0, sampler="sobol")
    >>> any(issubclass(w.category, mc.QMCWarning) for w in caught)     # 1000 is not a power of 2
    True
    """


def check_sampler(sampler):
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"sampler must be 'mc' or 'sobol', got {sampler!r}")
    return sampler


def check_mc_only(sampler, n_randomizations):
    """sampler='mc' takes no n_randomizations."""
    if n_randomizations is not None:
        raise ValueError("n_randomizations applies only to sampler='sobol'")


def split(n, n_randomizations, per_point=1):
    """(R, m): randomisations and points per randomisation for n draws in
    total, each point giving ``per_point`` draws (2 for antithetic pairs)."""
    R = DEFAULT_RANDOMIZATIONS if n_randomizations is None else V.integer(
        "n_randomizations", n_randomizations, minimum=2, maximum=2**20)
    n = V.integer("n", n, minimum=2, maximum=2**62)
    m = n // (R * per_point)
    if m < 2:
        raise ValueError(f"n={n} draws give fewer than 2 points per randomisation with "
                         f"n_randomizations={R}{' and antithetic pairs' if per_point > 1 else ''}"
                         f"; need n >= {2 * R * per_point}")
    if m & (m - 1) or m * R * per_point != n:
        good = R * per_point * (1 << max(1, m.bit_length() - 1))
        warnings.warn(
            f"sampler='sobol': n={n} draws give {m} points per randomisation (n_randomizations="
            f"{R}); scrambled Sobol' points keep their balance (and fast convergence) only for "
            f"a power of two of points per randomisation: use n = n_randomizations * 2**k"
            f"{' * 2' if per_point > 1 else ''} (e.g. {good}); {m * R * per_point} draws are "
            "used", QMCWarning, stacklevel=4)
    return R, m


def seeds(rng, R):
    """(root SeedSequence, the R SeedSequences of the scramblings): child r
    is the root's r-th spawn, made without changing the root."""
    root = V.root_seed_sequence(rng)
    key = tuple(root.spawn_key)
    return root, [np.random.SeedSequence(root.entropy, spawn_key=key + (r,),
                                         pool_size=root.pool_size) for r in range(R)]


def points(d, m, seed, width=1):
    """Yield (first index, u) over the m points of one scrambled Sobol'
    sequence in d dimensions, in chunks of a power of two of points (about
    _CHUNK_VALUES values of d or `width` per point, the larger)."""
    from scipy.stats import qmc

    if d > MAX_DIM:
        raise ValueError(f"sampler='sobol' supports draws of at most {MAX_DIM} uniforms "
                         f"(scipy's Sobol' direction numbers); this one needs {d}")
    bits = _BITS_SMALL if m <= _SMALL_M else _BITS
    half = 2.0 ** -(bits + 1)
    gen = np.random.default_rng(seed)
    try:
        eng = qmc.Sobol(d, scramble=True, bits=bits, rng=gen)
    except TypeError:  # scipy < 1.15 names it seed
        eng = qmc.Sobol(d, scramble=True, bits=bits, seed=gen)
    chunk = 1 << max(0, (max(1, _CHUNK_VALUES // max(d, width))).bit_length() - 1)
    stop = getattr(_RUN, "stop", None)
    for start in range(0, m, chunk):
        if stop is not None and stop.is_set():
            raise _Stopped
        # scipy warns when the points drawn so far are not a power of two
        # (3 chunks, say); the balance of the whole sequence is split()'s
        # concern.  catch_warnings swaps process-wide state: one thread at a
        # time, and only around the call.
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*balance properties",
                                    category=UserWarning)
            u = eng.random(min(chunk, m - start))
        u += half
        yield start, u


def run(work, R, n_threads, client=None, parallel=True):
    """work(r) for r in 0..R-1, in randomisation order: one array each.
    Threads take whole randomisations when `parallel` (the work calls no
    user Python code, which is called from one thread, as in the Monte Carlo
    engine)."""
    if client is not None:
        futures = client.map(_run_one, [work] * R, list(range(R)), pure=False)
        return np.stack(client.gather(futures))
    threads = effective_n_threads(n_threads, work_items=R)  # validates n_threads too
    if threads <= 1 or not parallel:
        return np.stack([work(r) for r in range(R)])
    stop = threading.Event()

    def task(r):
        _RUN.stop = stop  # read by points(): a worker stops at its next chunk
        return work(r)

    ex = ThreadPoolExecutor(max_workers=threads)
    try:
        return np.stack(list(ex.map(task, range(R))))
    except BaseException:
        # an error or a KeyboardInterrupt in the caller: the other workers
        # stop at their next chunk instead of finishing their randomisations
        stop.set()
        raise
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


class _Stopped(Exception):
    """A worker told to stop (its result is not used)."""


_RUN = threading.local()


def _run_one(work, r):
    return work(r)


def _scores(dist, kd, x):
    """The flat scores (m, P) of kernel draws x, checked finite."""
    m = len(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        S = K.eval_scores(kd, np.ascontiguousarray(x.reshape(m, -1)))
    if not np.isfinite(S).all():
        i = int(np.argmax(~np.isfinite(S).all(axis=1)))
        raise FloatingPointError(
            f"sampler='sobol': the score of {dist!r} is not finite at the draw "
            f"{np.array2string(np.asarray(x[i]), threshold=6)} obtained by inversion (a "
            "quantile that rounded to the edge of the support); use sampler='mc'")
    return S


class _ScoreWork:
    """One randomisation of the score estimator: the sums of f, f s, s and
    h_j s over its points (and their mirror images with antithetic)."""

    def __init__(self, f, dist, m, seeds, hs, antithetic):
        self.f, self.dist, self.m, self.seeds = f, dist, m, seeds
        self.hs, self.antithetic = hs, antithetic

    def __call__(self, r):
        dist = self.dist
        kd = dist._kernel_dist()
        P = kd_coords(dist)
        J = len(self.hs)
        acc = np.zeros(1 + (2 + J) * P)
        for start, u in points(dist._qmc_dim(), self.m, self.seeds[r], (2 + J) * P):
            x = dist._qmc_draws(u)
            for xx in ((x, dist.mirror(x)) if self.antithetic else (x,)):
                S = _scores(dist, kd, xx)
                xu = dist._to_user_dtype(xx)
                rows = np.empty((2 + J, len(xx)))
                rows[0] = call_f(self.f, xu, start)
                rows[1] = 1.0
                for j, h in enumerate(self.hs):
                    rows[2 + j] = call_f(h, xu, start)
                acc[0] += rows[0].sum()
                acc[1:] += (rows @ S).ravel()  # f s, s, h_j s
        return acc


def kd_coords(dist):
    dist._kernel_dist()
    return sum(sl.stop - sl.start for sl, _ in dist._coord_slices.values())


def crossfit(g, controls):
    """g (R, P) per-randomisation estimates, controls (R, P, L) of mean 0:
    g_r - controls_r . beta_{-r}, beta_{-r} the per-coordinate least-squares
    coefficients fitted on the other randomisations."""
    R, P, L = controls.shape
    if R - 1 < L + 2:
        raise ValueError(f"fitting {L} coefficient(s) (baseline / control variates) across "
                         f"randomisations needs n_randomizations >= {L + 3}, got {R}")
    out = np.empty_like(g)
    for r in range(R):
        keep = np.arange(R) != r
        gc = g[keep] - g[keep].mean(0)
        cc = controls[keep] - controls[keep].mean(0)
        M = np.einsum("rpl,rpk->plk", cc, cc)
        v = np.einsum("rpl,rp->pl", cc, gc)
        beta = np.einsum("plk,pk->pl", np.linalg.pinv(M, hermitian=True), v)
        out[r] = g[r] - np.einsum("pl,pl->p", controls[r], beta)
    return out


def _result(dist, est, values, n_total, R, m, method, baseline, info):
    """GradientEstimate from per-randomisation estimates est (R, P) and
    values (R,): their mean, and standard errors from their spread; the
    covariance is their sample covariance over R (the batch means of
    GradientEstimate with R equal batches: R - 1 degrees of freedom)."""
    with np.errstate(over="ignore", invalid="ignore"):
        grad = est.mean(0)
        se = est.std(0, ddof=1) / math.sqrt(R)
        value = float(values.mean())
        vse = float(values.std(ddof=1) / math.sqrt(R))
    if not (np.isfinite(grad).all() and np.isfinite(se).all() and math.isfinite(vse)):
        raise FloatingPointError("sampler='sobol': the estimate overflowed (inf or NaN)")
    var = se * se * n_total
    info = {**info, "sampler": "sobol", "n_randomizations": R, "points_per_randomization": m}
    res = GradientEstimate(dist._split_coords(grad), dist._split_coords(se),
                           dist._split_coords(var), value, vse, n_total, baseline=baseline,
                           method=method, value_variance=vse * vse * n_total, info=info,
                           batch=(np.full(R, n_total / R), est))
    res.sampler = "sobol"
    res.n_randomizations = R
    return res


def _plan_info(root, R, m, n_threads, parallel=True):
    return {"entropy": root.entropy, "spawn_key": tuple(root.spawn_key),
            "threads": effective_n_threads(n_threads, work_items=R) if parallel else 1}


def check_python_f(f, dist, name="f"):
    fkind, _ = lower_f(f, dist)
    if fkind == "callback":
        raise TypeError(f"sampler='sobol' calls {name} on blocks of draws from Python: pass a "
                        "vectorised Python callable or an mcscore.integrands.Integrand, not a "
                        "scipy.LowLevelCallable")


def score_grad(f, dist, n, *, rng, baseline, control_variates, antithetic, grad_f, n_threads,
               n_randomizations, client=None, method="score"):
    """score_grad(..., sampler="sobol"): see mcscore.score_grad."""
    from .variance_reduction import _parse_cvs

    check_python_f(f, dist)
    if not isinstance(antithetic, (bool, np.bool_)):
        raise TypeError(f"antithetic must be True or False, got {antithetic!r}")
    if antithetic:
        dist.require("mirror")
    dist._check_differentiable()
    dist._qmc_dim()  # the clear error of a family without an inverse cdf
    cvs = _parse_cvs(dist, control_variates, grad_f)
    R, m = split(n, n_randomizations, 2 if antithetic else 1)
    root, sd = seeds(rng, R)
    work = _ScoreWork(f, dist, m, sd, [h for h, *_ in cvs], bool(antithetic))
    pure = isinstance(f, Integrand) and not cvs
    rows = run(work, R, n_threads, client, parallel=pure)
    draws = m * (2 if antithetic else 1)
    P = kd_coords(dist)
    fbar = rows[:, 0] / draws
    g = rows[:, 1:1 + P] / draws
    sbar = rows[:, 1 + P:1 + 2 * P] / draws
    controls = []
    if isinstance(baseline, float):
        g = g - baseline * sbar
    elif baseline == "loo":  # the mean of f over the other randomisations
        b = (fbar.sum() - fbar) / (R - 1)
        g = g - b[:, None] * sbar
    elif baseline == "optimal":
        controls.append(sbar)
    for j, (_, gm, beta) in enumerate(cvs):
        c = rows[:, 1 + (2 + j) * P:1 + (3 + j) * P] / draws - gm
        if beta is None:  # fitted across randomisations (cross-fitted)
            controls.append(c)
        else:  # a fixed, user-given coefficient
            g = g - beta * c
    if controls:
        g = crossfit(g, np.stack(controls, axis=-1))
    info = _plan_info(root, R, m, n_threads, pure)
    info.update(f="integrand" if isinstance(f, Integrand) else "python",
                antithetic=bool(antithetic), control_variates=len(cvs))
    return _result(dist, g, fbar, R * draws, R, m, method, baseline, info)


# ---------------------------------------------------------------------------
# pathwise
# ---------------------------------------------------------------------------

def _tangents(kind, x, a, b):
    """dx/dtheta of the pathwise table's term kinds (see _vr.TK_*) at the
    draws x (m, terms) for inverse-cdf draws."""
    from . import _vr

    if kind == _vr.TK_ONE:
        return np.ones_like(x)
    if kind == _vr.TK_NSCALE:
        return (x - a) / b
    if kind == _vr.TK_LNLOC:
        return x
    if kind == _vr.TK_LNSCALE:
        return x * (np.log(x) - a) / b
    if kind == _vr.TK_NEG_X_OVER:
        return -x / a
    if kind == _vr.TK_GAMMA_CONC:
        z = x * b
        aa = np.broadcast_to(a, z.shape)
        return _vr.dgamma_dalpha_array(z, aa).reshape(z.shape) / b
    return None


class _PathwiseWork:
    def __init__(self, f, grad_f, dist, m, seeds, table):
        self.f, self.grad_f, self.dist, self.m, self.seeds = f, grad_f, dist, m, seeds
        self.table = table

    def __call__(self, r):
        dist = self.dist
        t_start, kind, col, ta, tb = self.table
        P = len(t_start) - 1
        acc = np.zeros(1 + P)
        for start, u in points(dist._qmc_dim(), self.m, self.seeds[r], 2 * len(kind)):
            x = dist._qmc_draws(u)
            c = len(x)
            fx = call_f(self.f, x, start)
            G = call_grad(self.grad_f, x, None, c)
            xf = x.reshape(c, -1)
            T = np.empty((c, len(kind)))
            for k in np.unique(kind):
                sel = kind == k
                T[:, sel] = _tangents(int(k), xf[:, col[sel]], ta[sel], tb[sel])
            per_term = np.einsum("ij,ij->j", G[:, col], T)  # sum over the chunk's draws
            acc[0] += fx.sum()
            nz = np.diff(t_start) > 0
            sums = np.zeros(P)
            sums[nz] = np.add.reduceat(per_term, t_start[:-1][nz])
            acc[1:] += sums
        return acc


class _GammaPathwiseWork:
    """Beta and Dirichlet (pathwise through Gamma variates): each unit's
    Gamma(concentration_k, 1) variates are quantiles of their own uniforms
    (Beta: two per coordinate, Dirichlet: one per category) and x = G / S,
    S their sum; with the implicit Gamma tangents dG_j/dalpha_j,
    sum_c df/dx_c dx_c/dalpha_j = dG_j/dalpha_j (df/dx_j - sum_c df/dx_c x_c) / S
    (Beta: the pair (x, 1 - x) with df/d(1 - x) = 0)."""

    def __init__(self, f, grad_f, dist, m, seeds):
        self.f, self.grad_f, self.dist, self.m, self.seeds = f, grad_f, dist, m, seeds

    def __call__(self, r):
        from scipy import special

        from . import _vr
        from .distributions import index_map

        dist = self.dist
        ds = dist.draw_shape
        beta = dist.event_ndim == 0
        names = list(dist._coord_slices)
        if beta:
            a = np.stack([np.broadcast_to(dist._params[k], ds) for k in names], axis=-1)
        else:
            a = np.broadcast_to(dist._params[names[0]], ds)
        acc = np.zeros(1 + kd_coords(dist))
        for start, u in points(a.size, self.m, self.seeds[r], 4 * a.size):
            c = len(u)
            g = special.gammaincinv(a, u.reshape((c,) + a.shape))
            s = g.sum(-1, keepdims=True)
            with np.errstate(invalid="ignore"):
                xg = g / s
            if not np.isfinite(xg).all():
                raise FloatingPointError(
                    f"pathwise_grad(sampler='sobol') draws {type(dist).__name__} variates as "
                    "normalised Gamma quantiles and all of a unit's underflowed to 0 for "
                    f"concentrations as small as {float(a.min()):.3g}; use larger "
                    "concentrations or score_grad")
            x = xg[..., 0] if beta else xg
            fx = call_f(self.f, x, start)
            gf = call_grad(self.grad_f, x, None, c).reshape((c,) + ds)
            if beta:
                gf = np.stack([gf, np.zeros_like(gf)], axis=-1)
            dg = _vr.dgamma_dalpha_array(g, a)
            term = (dg / s * (gf - (gf * xg).sum(-1, keepdims=True))).sum(0)
            acc[0] += fx.sum()
            for i, name in enumerate(names):
                sl, pshape = dist._coord_slices[name]
                t = term[..., i] if beta else term
                acc[1 + sl.start:1 + sl.stop] += np.bincount(
                    index_map(pshape, ds), weights=t.ravel(), minlength=sl.stop - sl.start)
        return acc


def pathwise_grad(f, dist, n, *, grad_f, rng, n_threads, n_randomizations, client=None):
    """pathwise_grad(..., sampler="sobol"): see mcscore.pathwise_grad."""
    from . import _vr
    from .pathwise import _pathwise_table

    table = _pathwise_table(dist)
    bad = set(table[1].tolist()) - {_vr.TK_ONE, _vr.TK_NSCALE, _vr.TK_LNLOC, _vr.TK_LNSCALE,
                                    _vr.TK_NEG_X_OVER, _vr.TK_GAMMA_CONC}
    if bad and not dist.rsample_through_gammas:
        raise ValueError(f"pathwise_grad(sampler='sobol') does not support {type(dist).__name__}:"
                         " its reparameterisation tangents are not those of an inverse cdf; "
                         "use sampler='mc' or score_grad")
    dist._qmc_dim()
    R, m = split(n, n_randomizations)
    root, sd = seeds(rng, R)
    work = (_GammaPathwiseWork(f, grad_f, dist, m, sd) if dist.rsample_through_gammas
            else _PathwiseWork(f, grad_f, dist, m, sd, table))
    rows = run(work, R, n_threads, client, parallel=False)
    info = _plan_info(root, R, m, n_threads, False)
    info["f"] = "python"
    return _result(dist, rows[:, 1:] / m, rows[:, 0] / m, R * m, R, m, "pathwise", None, info)


# ---------------------------------------------------------------------------
# variational inference
# ---------------------------------------------------------------------------

class _ElboIntegrand:
    """f = log p(x, data) - log q(x) (log q first: an edge draw of q is q's
    fault, not log_joint's)."""

    def __init__(self, log_joint, q, log_q, call_log_joint):
        self.log_joint, self.q = log_joint, q
        self.log_q, self.call_log_joint = log_q, call_log_joint

    def __call__(self, x):
        lq = self.log_q(self.q, x)
        return self.call_log_joint(self.log_joint, x) - lq


def elbo_grad(log_joint, q, n, *, rng, baseline, n_randomizations, log_q, call_log_joint):
    """vi.elbo_grad(..., sampler="sobol"): the score estimator of the ELBO
    on scrambled Sobol' draws of q."""
    f = _ElboIntegrand(log_joint, q, log_q, call_log_joint)
    return score_grad(f, q, n, rng=rng, baseline=baseline, control_variates=None,
                      antithetic=False, grad_f=None, n_threads=1,
                      n_randomizations=n_randomizations, method="score (ELBO)")
