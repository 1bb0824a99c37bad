"""The score-function estimator: :func:`score_grad` (with baselines, and
control variates / antithetic pairs through
:mod:`mcscore.variance_reduction`), :func:`score_grad_from_samples` on the
caller's draws, and :func:`rloo_grad` (k draws per sample)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, NoReturn

import numpy as np

from . import _boundary as B
from . import _engine as E
from . import prepared as _prepared
from . import _qmc
from . import _validation as V
from . import _vr
from .result import GradientEstimate, terms_cov
from .variance_reduction import score_vr

if TYPE_CHECKING:
    from .distributions import Distribution

__all__ = ["score_grad", "score_grad_from_samples", "rloo_grad", "GradientEstimate",
           "default_block_size", "CALLBACK_SIGNATURES"]

default_block_size = E.default_block_size
CALLBACK_SIGNATURES = E.CALLBACK_SIGNATURES
DEFAULT_STREAMS = E.DEFAULT_STREAMS


def score_grad(f: Any, dist: Distribution, n: int, *, rng: Any = None, baseline: Any = None,
               n_threads: int | None = None, chunk_size: int | None = None,
               n_streams: int = DEFAULT_STREAMS, block_size: int | None = None,
               control_variates: Any = None, antithetic: bool = False,
               grad_f: Callable[..., Any] | None = None, client: Any = None,
               progress: Any = False, batch_ndims: int = 0, sampler: str = "mc",
               n_randomizations: int | None = None,
               f_threadsafe: bool = False) -> GradientEstimate:
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
        Any family, or a :class:`mcscore.Joint` of named components: a Python
        f then receives a dict ``{name: (m, *component.draw_shape)}``, a fused
        integrand or C callback the draw flattened component by component
        (see Joint), and the gradients are keyed "name.param".
        A family whose support moves with its parameters (Uniform) gets the
        boundary term added draw by draw (f at the draw with one coordinate
        pinned to low or high: 2 extra evaluations of f per draw coordinate
        per draw); it needs a Python f (or, for a scalar Uniform, whose
        pinned draw is the bound itself, any f) and refuses control variates.
    n : int >= 2
        Number of draws.
    rng : None, int, SeedSequence or Generator (SPEC 7)
        Seeds the call's streams.  The same int / SeedSequence gives a
        bit-identical result for any ``n_threads`` and ``chunk_size``.
    baseline : None, float, "loo", "optimal" or a baseline object
        None: plain estimator.  A float b: ``(f - b) * score``.  "loo":
        leave-one-out (RLOO) baseline, unbiased.  "optimal": per coordinate
        the variance-minimising constant ``E[f s^2] / E[s^2]``, cross-fitted
        across streams (each stream's baseline comes from the other
        streams) so the estimate stays unbiased.  An object with a
        ``score_grad`` method (``mcscore.baselines.MovingAverageBaseline``,
        ``ContextBaseline``) runs the call itself.
    n_threads : None or int
        None = all threads OpenMP would use (OMP_NUM_THREADS and threadpoolctl
        are honoured), -1 = all, -2 = all but one, 0 is an error.
    chunk_size : int, optional
        Draws per call of a Python f (default about 2**18 values).
    f_threadsafe : bool, default False
        Opt in to calling a Python f from several threads at once: with
        ``n_threads`` >= 2, f runs on different rounds of draws at the same
        time (NumPy releases the GIL inside its loops, so the calls
        overlap).  f must then be thread safe and reentrant (no shared
        state it changes, no reuse of one output buffer across calls).
        The result is the same bits either way (f is called on the same
        draws and the per-stream sums are added in a fixed order); an
        error in f is raised as it would be without the opt-in.  False
        (the default): f is only ever called from the calling thread, one
        call at a time.  It applies to the plain Python-f estimate (no
        ``batch_ndims``, control variates, antithetic pairs, Joint, Dask
        client or QMC sampler; those call f as by default) of a call with
        several rounds of draws.
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
    batch_ndims : int >= 0
        Batched expectations: the first ``batch_ndims`` dimensions of
        ``dist.batch_shape`` (``batch_shape[:batch_ndims]``, the *batch*)
        index independent expectations, one per data point or state.  f is
        a Python callable returning shape ``(m, *batch)``: column b is the
        integrand of batch element b, and each parameter element's gradient
        uses only its own batch element's column (every baseline within
        each batch element), so the estimate is that of separate calls per
        batch element with the same n, at the cost of one.  ``value`` and
        ``value_stderr`` then have the batch's shape.  Every parameter
        element must belong to one batch element (pass shared parameters
        broadcast to the batch).  A fused integrand or C callback applies
        to each batch element's own draw (shape ``dist.draw_shape[k:]``, a
        callback's ``d`` is its size) and is evaluated in the kernels
        (not with a Joint).  Control variates and antithetic pairs are
        refused.  0 (the default): one expectation over the whole draw.
    sampler : "mc" or "sobol"
        "sobol": randomised quasi-Monte Carlo, draws by inversion of
        scrambled Sobol' points (see :mod:`mcscore._qmc` and the user guide's
        quasi-Monte Carlo page):
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

    Raises
    ------
    TypeError
        ``f``, ``dist`` or an option of the wrong type (e.g. ``n`` not an
        integer, ``dist`` not an mcscore distribution); the message names it.
    ValueError
        An argument outside its constraint (``n`` < 2, an unknown
        ``baseline``, ...), or f returning the wrong shape or a non-finite
        value (the message gives the draw).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Normal(loc=np.zeros(3), scale=np.ones(3))
    >>> res = mc.score_grad(lambda x: (x ** 2).sum(axis=-1), q, n=10_000, rng=0)
    >>> res.grad["loc"].shape, res.stderr["scale"].shape
    ((3,), (3,))
    >>> z = (res.grad["scale"] - 2.0) / res.stderr["scale"]   # exact: d E[x^2] / d scale = 2 scale
    >>> bool(np.all(np.abs(z) < 5))
    True
    """
    E.check_distribution(dist)
    if f_threadsafe is not False:
        f_threadsafe = V.flag("f_threadsafe", f_threadsafe)
    if hasattr(baseline, "score_grad"):  # a baseline object (mcscore.baselines)
        return baseline.score_grad(f, dist, n, rng=rng, n_threads=n_threads,
                                   chunk_size=chunk_size, n_streams=n_streams,
                                   block_size=block_size, control_variates=control_variates,
                                   antithetic=antithetic, grad_f=grad_f, client=client,
                                   progress=progress)
    baseline = E.check_baseline(baseline)
    k = 0
    if not (type(batch_ndims) is int and batch_ndims == 0):
        k = E.check_batch_ndims(batch_ndims, dist)
    if grad_f is not None and not callable(grad_f):
        raise TypeError(f"grad_f must be a vectorised Python callable, got {type(grad_f).__name__}")
    if _qmc.check_sampler(sampler) == "sobol":
        if k:
            _refuse_batched("sampler='sobol'", k)
        V.engine_sizes(chunk_size, n_streams, block_size)
        if progress is not None:
            V.flag("progress", progress)
        return _qmc.score_grad(f, dist, n, rng=rng, baseline=baseline,
                               control_variates=control_variates, antithetic=antithetic,
                               grad_f=grad_f, n_threads=n_threads,
                               n_randomizations=n_randomizations, client=client)
    _qmc.check_mc_only(sampler, n_randomizations)
    if k and (control_variates is not None or antithetic is not False):
        _refuse_batched("control variates and antithetic pairs", k)
    # -- a support that moves with the parameters (Uniform): the family's
    # boundary term (mcscore._boundary; docs/design.md "Boundary terms")
    B.refuse_inside(dist, k)
    if getattr(dist, "has_boundary", False):
        if control_variates is not None:
            B.refuse(dist, "score_grad with control_variates",
                     "the control-variate kernels accumulate scores only")
        return B.boundary_score_grad(
            f, dist, n, rng=rng, baseline=baseline, antithetic=antithetic,
            n_threads=n_threads, chunk_size=chunk_size, n_streams=n_streams,
            block_size=block_size, client=client, progress=progress)
    # -- end of the boundary-term hook
    if E.is_joint(dist) and control_variates is None and antithetic is False:
        return _score_joint(f, dist, n, k, rng=rng, baseline=baseline, n_threads=n_threads,
                            chunk_size=chunk_size, n_streams=n_streams, block_size=block_size,
                            client=client, progress=progress)
    if k:
        return _score_batched(f, dist, n, k, rng=rng, baseline=baseline, n_threads=n_threads,
                              chunk_size=chunk_size, n_streams=n_streams, block_size=block_size,
                              client=client, progress=progress)
    if control_variates is not None or antithetic is not False:
        return score_vr(f, dist, n, rng=rng, baseline=baseline,
                        control_variates=control_variates, antithetic=antithetic,
                        grad_f=grad_f, n_threads=n_threads, chunk_size=chunk_size,
                        n_streams=n_streams, block_size=block_size, client=client)
    fkind, kf = E.lower_f(f, dist)
    if (client is None and progress is False and type(n) is int and type(n_streams) is int
            and (block_size is None or type(block_size) is int)
            and (n_threads is None or type(n_threads) is int)
            and (chunk_size is None or (type(chunk_size) is int and chunk_size >= 1))):
        # the common small call, through the caches of a prepared one (the same
        # bits); dist's differentiability is checked there
        return _prepared.score_small(f, dist, n, rng, baseline, n_threads, chunk_size,
                                     n_streams, block_size, f_threadsafe)
    E.check_differentiable(dist)
    kd = dist._kernel_dist()
    plan = E.Plan(n, kd.draw_size, rng, n_streams, block_size, n_threads)
    bar = E.progress_bar(progress, plan)
    try:
        if client is not None:
            stats, shifts = E.run_on_dask(client, f, fkind, dist, kd, plan, n_threads=n_threads,
                                          chunk_size=chunk_size, progress=bar)
        elif fkind == "python":
            stats, shifts = E.run_job(E.ScoreJob(f, dist), plan, chunk_size, progress=bar,
                                      f_threadsafe=f_threadsafe)[:2]
        else:
            stats, shifts = E.run_fused(kf, fkind, dist, kd, plan, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    return E.finish_score(dist, kd, stats, shifts, baseline, {**plan.info(), "f": fkind})


def _refuse_batched(what: str, k: int) -> NoReturn:
    raise ValueError(
        f"batch_ndims={k} needs a Python f returning one value per batch element, shape "
        f"(m, *batch_shape); {what} compute one value per draw: use a Python f, or "
        "batch_ndims=0")


def _score_batched(f: Any, dist: Any, n: int, k: int, *, rng: Any, baseline: Any,
                   n_threads: Any, chunk_size: Any, n_streams: Any, block_size: Any,
                   client: Any, progress: Any) -> GradientEstimate:
    """score_grad with batch_ndims=k > 0 (see score_grad)."""
    fkind, _ = E.lower_f(f, dist)
    E.check_differentiable(dist)
    job = E.BatchedScoreJob(f, dist, k, fkind)
    if fkind != "python":
        job.element_func()  # lowered once here: an error shows before any draw
    kd = dist._kernel_dist()
    plan = E.Plan(n, kd.draw_size, rng, n_streams, block_size, n_threads)
    if chunk_size is None:  # one call of f per round (see BatchedScoreJob.default_chunk)
        chunk_size = job.default_chunk(plan)
    stats, shifts = _run_local_or_dask(job, plan, chunk_size, client, n_threads, progress)
    return E.finish_batched(dist, kd, stats, shifts, baseline, job.fcol, job.bshape,
                            {**plan.info(), "f": fkind, "batch_ndims": k})


def _run_local_or_dask(job: Any, plan: Any, chunk_size: Any, client: Any, n_threads: Any,
                       progress: Any) -> Any:
    """(stats, shifts) of a job run locally (with a progress bar) or on Dask."""
    bar = E.progress_bar(progress, plan)
    try:
        if client is not None:
            return E.run(job, plan, chunk_size=chunk_size, client=client,
                         n_threads=n_threads)[:2]
        return E.run_job(job, plan, chunk_size, progress=bar)[:2]
    finally:
        if bar is not None:
            bar.close()


def _score_joint(f: Any, dist: Any, n: int, k: int, *, rng: Any, baseline: Any,
                 n_threads: Any, chunk_size: Any, n_streams: Any, block_size: Any,
                 client: Any, progress: Any) -> GradientEstimate:
    """score_grad on a Joint (see distributions.Joint): f on the dict of
    component draws (or a fused integrand / C callback on the flat draw),
    every component's score sums with the same f values."""
    fkind, kf = E.lower_f(f, dist)
    if k and fkind != "python":
        _refuse_batched("with a Joint, fused integrands and C callbacks", k)
    E.check_differentiable(dist)
    job = E.JointScoreJob(f, dist, fkind, kf, k)
    plan = E.Plan(n, dist.draw_size, rng, n_streams, block_size, n_threads)
    stats, shifts = _run_local_or_dask(job, plan, chunk_size, client, n_threads, progress)
    parts = [(c, c._kernel_dist(), fc) for c, fc in zip(job.comps, job.fcols or
                                                         [None] * len(job.comps))]
    info = {**plan.info(), "f": fkind, **({"batch_ndims": k} if k else {})}
    return E.finish_joint(dist, parts, stats, shifts, baseline, info, job.bshape if k else None)


def _samples_rare_floor(dist: Any, x: Any, fx: Any, S: Any, baseline: Any) -> Any:
    """rare_floor for score_grad_from_samples: the per-category sums of m
    Categorical draws x with values fx laid out as one stream of kernel
    statistics; the floor of each coordinate's per-draw variance of the
    baselined terms, or None when no category is rare."""
    if E.is_joint(dist):
        return None  # the floor is per family; a Joint's components go without it
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


def score_grad_from_samples(dist: Distribution, x: Any, fx: Any, *, baseline: Any = None,
                            batch_ndims: int = 0) -> GradientEstimate:
    """The estimator algebra on draws the caller made.

    Parameters
    ----------
    dist : Distribution
        The distribution x was drawn from.
    x : array, shape ``(m, *dist.draw_shape)``; for a Joint, a dict of component draws
    fx : array, shape ``(m,)`` or ``(m, *dist.batch_shape[:batch_ndims])``
        f at each draw (returns, rewards, simulator outputs).
    baseline : None, float, "loo" or "optimal"
        As in :func:`score_grad`; "optimal" uses an exact leave-one-out
        per-coordinate baseline, so it stays unbiased.
    batch_ndims : int >= 0
        As in :func:`score_grad`: fx holds one column per batch element and
        each parameter element's gradient uses its own (every baseline
        within each batch element); ``value`` has the batch's shape.  (The
        rare-category floor of the standard errors applies to
        ``batch_ndims=0`` only.)

    Returns
    -------
    GradientEstimate
        ``grad``, ``stderr`` and ``variance`` per parameter, ``value`` (the
        mean of ``fx``) and its standard error; ``n`` is the number of draws.

    Raises
    ------
    TypeError
        ``dist`` not an mcscore distribution.
    ValueError
        ``x`` or ``fx`` of the wrong shape, a non-finite ``fx``, a draw
        outside the support, an unknown ``baseline``, or fewer than 2 draws.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(probs=np.array([0.2, 0.7]))
    >>> x = q.sample(1000, rng=0)
    >>> fx = x.sum(axis=-1)                       # one reward per draw
    >>> res = mc.score_grad_from_samples(q, x, fx, baseline="loo")
    >>> res.grad["probs"].shape
    (2,)
    >>> z = (res.grad["probs"] - 1.0) / res.stderr["probs"]   # exact: d E[x0 + x1] / dp = 1
    >>> bool(np.all(np.abs(z) < 5))
    True
    """
    return samples_estimate(dist, x, fx, baseline, in_support=False, batch_ndims=batch_ndims)


def samples_estimate(dist: Any, x: Any, fx: Any, baseline: Any, in_support: bool,
                     batch_ndims: int = 0) -> GradientEstimate:
    """score_grad_from_samples; ``in_support=True`` when the caller has
    already found every log_prob of x finite (vi.elbo_grad: log q at q's own
    draws), which skips computing it a second time."""
    E.check_distribution(dist)
    baseline = E.check_baseline(baseline)
    k = 0 if type(batch_ndims) is int and batch_ndims == 0 else E.check_batch_ndims(
        batch_ndims, dist)
    B.refuse(dist, "score_grad_from_samples", "only f's values at the draws are given")
    B.refuse_inside(dist, 0)
    x = dist._check_x(x)
    m = x.shape[0]
    if m < 2:
        raise ValueError(f"x must hold at least 2 draws, got {m}")
    V.reject_masked("fx", fx)
    fx_arr = np.asarray(fx) if fx is not None else None
    if fx_arr is None or fx_arr.dtype.kind not in "biuf":
        raise TypeError(f"fx must be an array of real numbers, got "
                        f"{'None' if fx_arr is None else fx_arr.dtype}")
    want = (m,) + tuple(dist.batch_shape[:k])
    if fx_arr.shape != want:
        raise ValueError(f"fx must have shape {want} to match x"
                         + (f" (m, *batch_shape) with batch_ndims={k}" if k else "")
                         + f", got {fx_arr.shape}")
    fx_arr = fx_arr.astype(np.float64)
    if not np.isfinite(fx_arr).all():
        i = np.unravel_index(int(np.argmax(~np.isfinite(fx_arr))), fx_arr.shape)
        i = i[0] if len(i) == 1 else i
        raise ValueError(f"fx[{i}] = {fx_arr[i]} is not finite")
    lp = None if in_support else dist.log_prob(x)
    if lp is not None and not np.isfinite(lp).all():
        i = int(np.argmax(~np.isfinite(lp.reshape(m, -1)).all(axis=1)))
        raise ValueError(f"x[{i}] is outside the support of {dist!r}")
    sc = dist._score(x)  # the support was checked just above
    names = list(sc)
    S = np.concatenate([sc[nm].reshape(m, -1) for nm in names], axis=1)
    if k:
        return _samples_batched(dist, fx_arr.reshape(m, -1), S, baseline, k)
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
        for nm in names:
            size = sc[nm][0].size
            d[nm] = part[o: o + size].reshape(sc[nm].shape[1:])
            o += size
        out[len(out)] = d
    return GradientEstimate(out[0], out[1], out[2], fx_arr.mean(), math.sqrt(vvar / m), m,
                            baseline=baseline, method="score", value_variance=vvar,
                            info={"f": "samples"}, cov=terms_cov(y))


def _samples_batched(dist: Any, F: Any, S: Any, baseline: Any, k: int) -> GradientEstimate:
    """score_grad_from_samples with batch_ndims=k: F (m, nf) one column
    per batch element, S (m, P) the scores; coordinate q uses its batch
    element's column."""
    m = len(F)
    y = E.baselined_terms(F[:, E.coord_columns(dist, k)], S, baseline)
    bshape = tuple(dist.batch_shape[:k])
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        grad = y.mean(0)
        var = y.var(0, ddof=1)
        se = np.sqrt(var / m)
        vvar = F.var(0, ddof=1)
        g = F - F[0]
        f_underflow = bool(((np.mean(np.square(g), 0) < E.TINY_MEAN_SQUARE)
                            & (np.abs(g.mean(0)) > E.RESOLUTION)).any())
    value = F.mean(0)
    E.check_range(dist, grad, var, float(np.abs(value).max()), float(vvar.max()), f_underflow)
    split = dist._split_coords
    return GradientEstimate(split(grad), split(se), split(var), value.reshape(bshape),
                            np.sqrt(vvar / m).reshape(bshape), m, baseline=baseline,
                            method="score", value_variance=vvar.reshape(bshape),
                            info={"f": "samples", "batch_ndims": k})



def rloo_grad(f: Callable[..., Any], dist: Distribution, n: int, *, k: int = 4, rng: Any = None,
              n_threads: int | None = None, chunk_size: int | None = None,
              n_streams: int = E.DEFAULT_STREAMS, client: Any = None,
              batch_ndims: int = 0) -> GradientEstimate:
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
    batch_ndims : int >= 0
        Batched expectations (as in ``score_grad``): f returns ``(m,
        *batch)`` and each coordinate's leave-one-out groups use its own
        batch element's column; ``value`` has the batch's shape.

    Returns
    -------
    GradientEstimate
        Method ``"rloo"``: ``grad`` and ``stderr`` per parameter, ``value``;
        ``n`` samples of ``k`` draws each.

    Raises
    ------
    TypeError
        ``f``, ``dist`` or an option of the wrong type.
    ValueError
        ``k`` < 2, ``n`` < 2, or f returning the wrong shape or a non-finite
        value.

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Categorical(logits=np.zeros(3))
    >>> res = mc.rloo_grad(lambda x: (x == 2).astype(float), q, 1000, k=4, rng=0)
    >>> exact = np.array([-1.0, -1.0, 2.0]) / 9           # d P(x = 2) / d logits
    >>> bool(np.all(np.abs(res.grad["logits"] - exact) < 5 * res.stderr["logits"]))
    True
    """
    E.check_distribution(dist)
    B.refuse(dist, "rloo_grad", "its leave-one-out kernel accumulates scores only")
    B.refuse_inside(dist, 0)
    f = E.check_callable("f", f)
    bk = 0 if type(batch_ndims) is int and batch_ndims == 0 else E.check_batch_ndims(
        batch_ndims, dist)
    k = V.integer("k", k, minimum=2, maximum=1 << 12)
    n = V.integer("n", n, minimum=2, maximum=2**62 // k)
    E.check_differentiable(dist)
    if E.is_joint(dist):
        f = E.JointF(f, dist)  # f receives the dict of component draws
    ds = dist.draw_size
    bs = E.default_block_size(n * k, ds, V.integer("n_streams", n_streams, minimum=1))
    bs = k * max(1, bs // k)
    plan = E.Plan(n * k, ds, rng, n_streams, bs, n_threads)
    job = RlooJob(f, dist, k) if not bk else BatchedRlooJob(f, dist, k, bk)
    stats, shifts, offsets, mag = E.run(job, plan, chunk_size=chunk_size, client=client,
                                        n_threads=n_threads)
    info = {**plan.info(), "f": "python", "f_evals_per_sample": k}
    if bk:
        return job.finish(stats, shifts, offsets, mag, {**info, "batch_ndims": bk})
    grand, se, var, value, vse, vvar, nn, _ = est = E.estimate(
        dist, stats, shifts, job.P, 1, [1.0], offsets=offsets, terms="(f - f_loo) * score",
        mag=mag)
    return E.gradient_estimate(dist, grand, se, var, value, vse, vvar, nn, f"rloo(k={k})", info,
                               batch=est.batch)


class RlooJob(E.Job):
    """RLOO: draws of the family; f; the score kernel's leave-one-out terms
    over each group of k consecutive draws (f shifted per stream)."""

    offset_rows = 1

    def __init__(self, f: Any, dist: Any, k: int) -> None:
        self.f, self.dist, self.k = f, dist, k
        self.what = f"rloo_grad(k={k})"
        self.width = dist.draw_size
        self.table = E.score_table(dist)
        self.P = len(self.table[0]) - 1

    def buffers(self, R: int, B: int) -> np.ndarray:
        return np.empty((R, self.width * B))

    def draw(self, rd: Any, bitgens: Any, threads: Any, xt: Any, shared: bool = False) -> Any:
        self.prepare(rd, bitgens, threads, xt, _vr.PREP_DRAW, np.zeros(1))

    def evaluate(self, rd: Any, xt: Any, chunk: Any, mag: Any) -> Any:
        dist = self.dist
        xu = dist._to_user_dtype(self.gathered(rd, xt, self.width).reshape((rd.total,) +
                                                                  dist.draw_shape))
        F = self.padded("F", 1, rd)
        if rd.consecutive:  # the round's draws are the first total slots of F
            mag.see(E.call_values(self.f, xu, rd, chunk, out=F[0, :rd.total]))
        else:
            F[0, rd.index] = mag.see(E.call_values(self.f, xu, rd, chunk))
        return F, [F]

    def accumulate(self, rd: Any, xt: Any, F: Any, threads: Any, stats: Any,
                   shifts: Any) -> None:
        R = len(rd.blocks)
        _vr.acc_score(*self.table, rd.blocks, rd.slots, rd.n, rd.B, rd.n_streams, threads,
                      self.width, xt[:R], xt[:R], F, F, False, False, self.k, stats, shifts,
                      kd=self.dist._table_kernel_dist())


class BatchedRlooJob(RlooJob):
    """rloo_grad with batch_ndims=bk: f's nf columns, coordinate q's
    leave-one-out groups on its own column (acc_score's frow).  The stream
    rows are the Gram statistics followed by, per column, its shift (f's
    first value on the stream), sum g and sum g^2 (the values)."""

    offset_rows = 0  # leave-one-out differences do not depend on a constant

    def __init__(self, f: Any, dist: Any, k: int, bk: int) -> None:
        super().__init__(f, dist, k)
        self.bshape = tuple(dist.batch_shape[:bk])
        self.nf = int(np.prod(self.bshape, dtype=np.int64))
        self.qcol = E.coord_columns(dist, bk)
        self.gw = _vr.gram_width(self.P, 1)

    def new_stats(self, streams: int) -> Any:
        stats, shifts = super().new_stats(streams)
        return np.concatenate([stats, np.zeros((streams, 3 * self.nf))], axis=1), shifts

    def evaluate(self, rd: Any, xt: Any, chunk: Any, mag: Any) -> Any:
        dist = self.dist
        xu = dist._to_user_dtype(self.gathered(rd, xt, self.width).reshape((rd.total,) +
                                                                  dist.draw_shape))
        F = self.padded("F", self.nf, rd)
        index = rd.index

        def sink(c0: Any, v: Any) -> None:
            F[:, index[c0:c0 + len(v)]] = mag.see(v).T

        E.call_batched(self.f, xu, rd, chunk, self.bshape, sink)
        return F, ()

    def accumulate(self, rd: Any, xt: Any, F: Any, threads: Any, stats: Any,
                   shifts: Any) -> None:
        R, gw, nf, B = len(rd.blocks), self.gw, self.nf, rd.B
        dist = self.dist
        gram = np.ascontiguousarray(stats[:, :gw])
        _vr.acc_score(*self.table, rd.blocks, rd.slots, rd.n, B, rd.n_streams, threads,
                      self.width, xt[:R], xt[:R], F, F, False, False, self.k, gram, shifts,
                      self.qcol, kd=dist._table_kernel_dist())
        stats[:, :gw] = gram
        for r, m in enumerate(rd.rows):
            row = stats[rd.slots[r], gw:]
            if rd.blocks[r] < rd.n_streams:
                row[:nf] = F[:, r * B]
            g = F[:, r * B:r * B + m] - row[:nf, None]
            row[nf:2 * nf] += g.sum(1)
            row[2 * nf:] += (g * g).sum(1)

    def finish(self, stats: Any, shifts: Any, offsets: Any, mag: Any,
               info: Any) -> GradientEstimate:
        gw, nf = self.gw, self.nf
        dist = self.dist
        grand, se, var, _, _, _, nn, _ = E.estimate(
            dist, np.ascontiguousarray(stats[:, :gw]), shifts, self.P, 1, [1.0],
            terms="(f - f_loo) * score", mag=mag)
        value, vse, vvar = (np.reshape(v, self.bshape) for v in E.column_values(
            stats[:, 0] * self.k, stats[:, gw:gw + nf], stats[:, gw + nf:gw + 2 * nf],
            stats[:, gw + 2 * nf:]))
        return E.gradient_estimate(dist, grand, se, var, value, vse, vvar, nn,
                                   f"rloo(k={self.k})", info)
