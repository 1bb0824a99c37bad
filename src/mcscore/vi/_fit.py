"""The fit: the optimisation loop of :func:`fit` (Adam on the unconstrained
coordinates, Polyak-Ruppert averaging), the score step it prepares once,
and its result."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

from .. import _kernels as K
from .. import _validation as V
from .. import prepared as PR
from .._algebra import RESOLUTION, TINY_MEAN_SQUARE, baselined_terms, check_baseline, check_range
from .._config import blas_single_threaded
from .._progress import simple_bar
from ..distributions import Distribution
from ..distributions._base import _structure
from ..score import samples_estimate
from ._objective import _check_estimator, _check_sampler, _elbo_grad
from ._optim import Adam, _check_betas, _check_lr, _lr_at
from ._q import (
    _check_q, _from_unconstrained, _jacobian, _log_q, _replace, _replacer, _to_unconstrained,
    transforms,
)
from ._target import _Objective


class _ScoreStep:
    """The score-function ELBO gradient of :func:`fit`'s steps after the
    first, prepared once: what the first step validated and cannot change
    between steps (the family, its support, the baseline, the shapes) is
    not checked again.  A call gives (value, value stderr, {param: grad}),
    the numbers ``_score_part`` gives for the same q and generator, bit for
    bit (the gradient as one vector in the order of q's score columns,
    :meth:`as_dict` gives the dict); every guard a step can fail (q's density at its own draws,
    log_joint's output, overflow and underflow of the sums) stays, by a
    cheap test that falls back to the full path when it does not pass."""

    def __init__(self, q: Any, obj: Any, n: Any, baseline: Any) -> None:
        self.obj, self.n, self.baseline = obj, n, baseline
        self.draw_size = q.draw_size
        self.shape = (n,) + tuple(q.draw_shape)
        self.names = dict(q._coord_slices)  # {name: (slice, shape)} of the score columns
        # the first q's kernel, renewed for the next qs when their score
        # terms share its (cached) structure
        self.structure = None
        if type(q)._build_kernel is Distribution._build_kernel:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                self.structure = _structure(q, q._terms())
            self.kernel, self.table = q._kernel, dict(q._table)

    def _kernel(self, q: Any) -> Any:
        """q's kernel: KernelDist.renewed of the first q's with q's unit
        parameters and score coefficients (the numbers the full build gives)
        when q's terms have the first q's structure, else the full build."""
        st = self.structure
        if st is None or q._kernel is not None:
            return q._kernel_dist()
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            rows = q._terms()
            if _structure(q, rows) is not st:
                return q._kernel_dist()
            a, b, c = st.coefficients(rows)
            p0, p1 = q._draw_params()
        q._table = dict(self.table, a=a, b=b, c=c)
        q._coord_slices = self.names
        q._kernel = self.kernel.renewed(np.ravel(p0), np.ravel(p1), a, b, c)
        return q._kernel

    @classmethod
    def for_fit(cls, q: Any, obj: Any, n: Any, baseline: Any, estimator: Any, sampler: Any) -> Any:
        """The prepared step for q's family, or None where fit takes the
        full path at every step (another estimator or sampler, a Joint, a
        family that overrides the base class's sampling, density or score,
        one with a boundary term or a per-category kernel)."""
        base = Distribution
        if (estimator != "score" or sampler != "mc" or not isinstance(q, base)
                or getattr(q, "joint_components", None) is not None
                or getattr(q, "has_boundary", False) or q._kernel is None
                or q._kernel.per_category or getattr(q, "_coord_slices", None) is None
                or any(getattr(type(q), m) is not getattr(base, m)
                       for m in ("sample", "log_prob", "_score", "_check_x", "score"))):
            return None
        return cls(q, obj, n, baseline)

    def __call__(self, q: Any, gen: Any) -> Any:
        obj, n, add = self.obj, self.n, np.add.reduce
        idx = obj.minibatch(gen)
        kd = self._kernel(q)
        with gen.bit_generator.lock:  # q.sample(n, gen), its arguments known good
            x = K.draw(kd, gen.bit_generator, n)
        x = x.reshape(self.shape)
        q._check_draws(x)
        x = q._to_user_dtype(x)
        xf = np.asarray(x, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            lq = add(q._log_prob(xf).reshape(n, -1), 1)
            ok = math.isfinite(add(lq) + add(xf, None))
        if not ok:  # an infinite draw or density: the full check and its message
            lq = _log_q(q, x)
        # without subsampling, log_joint's output unchecked when it is a plain
        # float64 vector: the test of fx's sum below catches a value that is
        # not finite, and the full check then raises its error
        lj = obj.raw_value(x) if idx is None else None
        fx = (obj.value(x, idx) if lj is None else lj) - lq
        with np.errstate(invalid="ignore"):  # inf - inf: only with a non-finite log_joint
            total = add(fx)
        if not math.isfinite(total):  # fx not finite (or its sum beyond the doubles)
            if lj is not None:
                obj.checked(lj, x)
            res = samples_estimate(q, x, fx, self.baseline, in_support=True)
            return res.value, res.value_stderr, self._flat(res.grad)
        with np.errstate(divide="ignore", invalid="ignore"):
            with blas_single_threaded(q):
                S = K.eval_scores(kd, xf.reshape(n, self.draw_size))
        y = baselined_terms(fx, S, self.baseline)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            # y.mean(0), y.var(0, ddof=1), fx.mean() and fx.var(ddof=1) as
            # NumPy computes them (the same sums and divisions)
            grad = add(y, 0) / n
            z = y - grad
            var = add(z * z, 0) / (n - 1)
            value = total / n
            zf = fx - value
            vvar = float(add(zf * zf) / (n - 1))
            # f_underflow (the mean square of fx - fx[0] below TINY_MEAN_SQUARE)
            # cannot hold once vvar >= RESOLUTION: sum (fx - fx[0])**2 >=
            # sum (fx - mean)**2 = (n - 1) vvar, far above it; below, its test
            f_underflow = False
            if not vvar >= RESOLUTION:
                g = fx - fx[0]
                f_underflow = (float(add(g * g)) / n < TINY_MEAN_SQUARE
                               and abs(float(add(g)) / n) > RESOLUTION)
            # a sufficient condition for check_range to pass, in two
            # reductions: every var + grad**2 finite (so are var and grad) and
            # at least TINY_MEAN_SQUARE, value and vvar finite, f_underflow
            # False; where it fails, check_range runs and decides
            h = var + grad * grad
            fine = (math.isfinite(add(h) + value + vvar) and not f_underflow
                    and (not h.size or np.minimum.reduce(h) >= TINY_MEAN_SQUARE))
        if not fine:
            check_range(q, grad, var, float(value), vvar, f_underflow)
        return value, math.sqrt(vvar / n), grad

    def in_order(self, layout: Any) -> bool:
        """Whether the score columns are the parameters of the optimiser's
        flat vector, in its order and shapes (as every family has them)."""
        return [(k, sl, tuple(shp)) for k, (sl, shp) in self.names.items()] == [
            (k, layout.slices[k], layout.shapes[k]) for k in layout.shapes]

    def _flat(self, grad: Any) -> Any:
        """A {param: grad} as one vector in the score columns' order."""
        return np.concatenate([np.ravel(np.asarray(grad[k], dtype=float)) for k in self.names])

    def as_dict(self, grad: Any) -> Any:
        """The flat gradient of a call as {param: grad}."""
        return {k: grad[sl].reshape(shp) for k, (sl, shp) in self.names.items()}


def _lean(q: Any, kinds: Any) -> bool:
    """Whether the next qs of a prepared fit from q may be built by
    prepared.lean_dist: a family that builds, checks and scores its
    parameters as Normal does (lean_family), q's loc and scale of its
    batch shape and optimised as identity and log, q's kernel kept as the
    template of that family and shape."""
    params = q._params
    if not (PR.lean_family(type(q)) and kinds == {"loc": "identity", "scale": "log"}
            and list(params) == ["loc", "scale"] and q._kernel is not None
            and all(v.shape == q.batch_shape for v in params.values())):
        return False
    PR.remember_lean(q, q._kernel)
    return (type(q), q.batch_shape) in PR._LEAN


class VIResult:
    """The result of :func:`fit`.

    Attributes
    ----------
    q : Distribution
        The fitted distribution (Polyak-Ruppert average of the last iterates).
    q_last : Distribution
        The last iterate.
    elbo : ndarray, shape (steps,)
        The ELBO estimate at each step (at that step's parameters; with data
        subsampling, on that step's minibatch).
    elbo_stderr : ndarray, shape (steps,)
    steps, n : int
    transforms : dict[str, str]
        The unconstrained coordinate of each parameter.
    estimator : str
    lr : ndarray, shape (steps,)
        The step size of each step.

    Parameters
    ----------
    q, q_last : Distribution
        The averaged and the last iterate.
    elbo, elbo_stderr : numpy.ndarray, shape (steps,)
    steps, n : int
    transforms : dict of str to str
    estimator : str, default "score"
    lr : numpy.ndarray, optional

    Raises
    ------
    TypeError
        ``elbo`` without a length (the ``repr`` needs one).

    Examples
    --------
    >>> import mcscore as mc
    >>> res = mc.vi.fit(lambda x: -0.5 * (x - 1.0) ** 2, mc.Normal(0.0, 1.0), steps=50, n=50, rng=0)
    >>> type(res).__name__, res.elbo.shape, res.steps
    ('VIResult', (50,), 50)
    """

    def __init__(self, q: Any, q_last: Any, elbo: NDArray[np.float64],
                 elbo_stderr: NDArray[np.float64], steps: int, n: int, transforms: dict[str, str],
                 estimator: str = "score", lr: NDArray[np.float64] | None = None) -> None:
        self.q = q
        self.q_last = q_last
        self.elbo = elbo
        self.elbo_stderr = elbo_stderr
        self.steps = steps
        self.n = n
        self.transforms = transforms
        self.estimator = estimator
        self.lr = lr

    def __repr__(self) -> str:
        tail = self.elbo[-max(1, len(self.elbo) // 10):]
        return (f"VIResult(q={self.q!r}, steps={self.steps}, n={self.n}, "
                f"final ELBO ~ {tail.mean():.6g})")


def _step_too_large(t: Any, lr: Any, exc: Any) -> Any:
    # the family's own reason, without its advice (which is for other callers)
    reason = str(exc).split("; ")[0]
    return ValueError(
        f"fit: Adam step {t} (lr={lr:g}) was too large: it moved q to parameters where its "
        f"ELBO gradient cannot be estimated ({reason}); use a smaller lr or a decaying "
        "schedule (vi.inverse_time, vi.cosine)")


def fit(log_joint: Callable[..., Any], q: Any, *, steps: int = 2000, n: int = 100,
        lr: float | Callable[[int], float] = 0.05, rng: Any = None, progress: Any = False,
        baseline: float | str | None = "loo", betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, average: float = 0.5, estimator: str = "score",
        grad_log_joint: Callable[..., Any] | None = None, data_size: int | None = None,
        batch_size: int | None = None, log_prior: Callable[..., Any] | None = None,
        grad_log_prior: Callable[..., Any] | None = None, sampler: str = "mc",
        n_randomizations: int | None = None) -> VIResult:
    """Fit q to the posterior by maximising the ELBO (black-box VI).

    Each step draws ``n`` points from the current q, forms the ELBO
    gradient (:func:`elbo_grad` with ``estimator``), and takes an Adam step
    (Kingma & Ba 2015) on q's unconstrained parameters (see
    :func:`transforms`); the next q is a new distribution of the same family.

    Parameters
    ----------
    log_joint : callable
        Vectorised log p(x, data), as in :func:`elbo_grad`; with
        ``data_size``, ``log_joint(x, idx)`` is the minibatch log-likelihood.
    q : Distribution, or an object with the same capabilities (a Joint)
        Initial variational distribution.
    steps : int >= 1
    n : int >= 2
        Draws per step.
    lr : float > 0, or a callable of the step t = 1, 2, ...
        Adam step size (in the unconstrained coordinates), or a schedule
        returning it (a finite number >= 0) (:func:`inverse_time`, :func:`cosine`, any callable).
    rng : None, int, SeedSequence or Generator
    progress : bool
        Show a progress bar over the steps (tqdm when installed, plain lines
        on stderr otherwise), as every estimator's ``progress``.  Default
        False.
    baseline : None, float, "loo" or "optimal"
    betas, eps : Adam's moment decays and denominator guard.
    average : float in [0, 1)
        Fraction of the last steps whose iterates are averaged into the
        returned ``q`` (0: the last iterate).
    estimator, grad_log_joint, data_size, batch_size, log_prior, grad_log_prior
        As in :func:`elbo_grad` (the minibatch is drawn afresh each step).

    sampler, n_randomizations
        As in :func:`elbo_grad` ("sobol": each step's gradient from freshly
        scrambled Sobol' points, n draws in total per step).
    Returns
    -------
    VIResult
        ``.q`` (fitted), ``.elbo`` (history), ...

    Raises
    ------
    TypeError
        ``log_joint`` not callable, or ``q`` not an mcscore distribution (or
        Joint).
    ValueError
        An option outside its range (``steps`` < 1, ``lr`` <= 0, an unknown
        ``estimator``, ...), ``log_joint`` returning the wrong shape or a
        non-finite value on the support of ``q``, or a run whose ELBO
        diverges.

    Examples
    --------
    A Normal mean with a N(0, 1) prior and three observations y_i ~ N(mu, 1):
    the exact posterior is N(sum(y) / 4, 1/4).

    >>> import numpy as np
    >>> import mcscore as mc
    >>> y = np.array([0.8, 1.3, 0.4])
    >>> def log_joint(x):
    ...     mu = x[:, 0]
    ...     return -0.5 * mu ** 2 - 0.5 * ((y[None, :] - mu[:, None]) ** 2).sum(axis=1)
    >>> res = mc.vi.fit(log_joint, mc.Normal(np.zeros(1), np.ones(1)), steps=500, n=100,
    ...                 lr=0.05, rng=0, progress=False)
    >>> bool(abs(res.q.loc[0] - y.sum() / 4) < 0.05), bool(abs(res.q.scale[0] - 0.5) < 0.05)
    (True, True)
    """
    q = _check_q(q)
    obj = _Objective(log_joint, grad_log_joint, data_size, batch_size, log_prior,
                     grad_log_prior)
    steps = V.integer("steps", steps, minimum=1, maximum=2**40)
    n = V.integer("n", n, minimum=2)
    lr = _check_lr(lr)
    average = V.scalar("average", average, "unit_interval_lt1")
    eps = V.scalar("eps", eps, "positive")
    progress = V.flag("progress", progress)
    baseline = check_baseline(baseline)
    estimator = _check_estimator(estimator)
    sampler = _check_sampler(sampler, n_randomizations, estimator, obj)
    b1, b2 = _check_betas(betas)
    gen = V.as_generator(rng)
    kinds = transforms(q)
    u = {k: _to_unconstrained(kinds[k], v) for k, v in q.params.items()}
    opt = Adam(u, lr=lr if not callable(lr) else 1.0, betas=(b1, b2), eps=eps)
    layout = opt._layout
    start_avg = min(steps - 1, int(math.floor(steps * (1 - average))))
    acc = np.zeros(layout.size)
    n_acc = 0
    elbo = np.empty(steps)
    elbo_se = np.empty(steps)
    lrs = np.empty(steps)
    weights = None  # "mixed": the previous step's inverse-variance weights
    bar = simple_bar(steps, progress, "VI (Adam)")
    cur = q
    replace = _replacer(q)
    family, lean = type(q), False
    prepared = None  # the score step prepared by the first step
    # its flat gradient times d(param)/d(unconstrained) as one vector: the
    # entries of the identity coordinates are 1 for good, the others are
    # renewed at each step from q's parameters (the same products, entry by
    # entry, as the per-parameter chain rule)
    jac = np.ones(layout.size)
    curved = [(k, layout.slices[k]) for k in layout.shapes if kinds[k] != "identity"]
    try:
        for t in range(1, steps + 1):
            if prepared is not None:
                value, value_se, grad = prepared(cur, gen)
                params = cur.params
                for k, sl in curved:
                    jac[sl] = np.ravel(_jacobian(kinds[k], params[k]))
                gf = grad * jac
                if not math.isfinite(gf.sum()):
                    grad = prepared.as_dict(grad)
                    gf = None
            else:
                res = _elbo_grad(obj, cur, n, gen, baseline, estimator, weights, sampler,
                                 n_randomizations)
                if estimator == "mixed":
                    weights = res.info["plugin_weights"]
                value, value_se, grad = res.value, res.value_stderr, res.grad
                if t == 1:
                    prepared = _ScoreStep.for_fit(q, obj, n, baseline, estimator, sampler)
                    if prepared is not None and not prepared.in_order(layout):
                        prepared = None
                    lean = prepared is not None and _lean(q, kinds)
                params = cur.params
                gf = layout.flat({k: grad[k] * _jacobian(kinds[k], params[k])
                                  for k in layout.shapes})
                if not math.isfinite(gf.sum()):
                    gf = None
            elbo[t - 1] = value
            elbo_se[t - 1] = value_se
            lrs[t - 1] = lr_t = _lr_at(lr, t)
            if gf is not None:
                uf = opt._step_flat(gf, lr_t)
            else:  # the optimiser's own check names the gradient that is not finite
                opt.step({k: grad[k] * _jacobian(kinds[k], params[k]) for k in layout.shapes},
                         lr_t)
                uf = opt._p
            try:
                with np.errstate(over="ignore", under="ignore"):
                    new = {k: _from_unconstrained(kinds[k], v)
                           for k, v in layout.split(uf).items()}
                    # a Normal / LogNormal with its checks and kernel in one
                    # C pass; where it declines, the general build and checks
                    got = PR.lean_dist(family, new["loc"], new["scale"]) if lean else None
                    if got is not None:
                        cur = got[0]
                    else:
                        cur = replace(new)
                        check = getattr(cur, "_check_differentiable", None)
                        if check is not None:
                            check()
            except ValueError as exc:
                raise _step_too_large(t, lr_t, exc) from None
            if t - 1 >= start_avg:
                acc += uf
                n_acc += 1
            bar.update(1)
            if t % 50 == 0:
                bar.set_postfix_str(f"ELBO {elbo[max(0, t - 50):t].mean():.4g}")
    finally:
        bar.close()
    q_avg = _replace(q, {k: _from_unconstrained(kinds[k], v)
                         for k, v in layout.split(acc / n_acc).items()})
    return VIResult(q_avg, cur, elbo, elbo_se, steps, n, kinds, estimator, lrs)
