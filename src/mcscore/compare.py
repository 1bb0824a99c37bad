"""All applicable estimators on one problem: :func:`compare_estimators`
and its result, :class:`Comparison`.  Which estimators apply is asked of
the family (its capabilities: mirror, mean tangents, rsample,
relaxation)."""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _engine as E
from . import _validation as V
from .baselines import ContextBaseline
from .discrete import disarm_grad, rebar_grad, relaxed_grad
from .distributions import Bernoulli, Binomial, Categorical
from .enumeration import enumerate_grad, support_size
from .measure_valued import mvd_grad
from .pathwise import pathwise_cv_grad, pathwise_grad
from .relax import NumpySurrogate, RebarSurrogate, relax_grad, train_surrogate
from .score import rloo_grad, score_grad
from .unordered_set import sum_and_sample_grad, unordered_set_grad
from .result import GradientEstimate
from .variance_reduction import variance_tangents

if TYPE_CHECKING:
    from .distributions import Distribution

__all__ = ["compare_estimators", "Comparison"]


def _one_hot(idx: Any, kk: int) -> NDArray[np.float64]:
    return (np.asarray(idx)[..., None] == np.arange(kk)).astype(np.float64)


class Comparison:
    """The result of :func:`compare_estimators`.

    ``rows``: one dict per estimator with keys name, estimate (dict),
    stderr (dict), variance (per-sample variance summed over the gradient's
    coordinates), f_evals (f evaluations per sample), eval_variance
    (variance x f_evals: the variance at equal cost in f evaluations, i.e.
    stderr^2 x the f evaluations spent; lower is better), time (seconds),
    work_variance (variance x seconds per sample = stderr^2 x time: lower
    is better at equal cost), z (``max |estimate - exact| / stderr`` when exact
    was given), unbiased (bool) and result (the GradientEstimate).

    Parameters
    ----------
    rows : list of dict
        One dict per estimator (the keys above).
    exact : dict of str to array_like, optional
        The exact gradient the rows were compared with.

    Raises
    ------
    KeyError
        ``cmp[name]`` for a name that is not a row.

    Examples
    --------
    >>> import mcscore as mc
    >>> cmp = mc.compare_estimators(lambda x: x ** 2, mc.Normal(1.0, 1.0), 2000, rng=0,
    ...                             estimators=["score", "score+loo"])
    >>> cmp.names
    ['score', 'score+loo']
    >>> cmp["score+loo"]["unbiased"]
    True
    """

    def __init__(self, rows: list[dict[str, Any]],
                 exact: Mapping[str, Any] | None = None) -> None:
        self.rows = rows
        self.exact = exact

    def __getitem__(self, name: str) -> dict[str, Any]:
        for r in self.rows:
            if r["name"] == name:
                return r
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [r["name"] for r in self.rows]

    def best(self) -> str:
        """Name of the unbiased estimator with the lowest work-normalised variance.

        Returns
        -------
        str
            The row's name.

        Raises
        ------
        ValueError
            When no row is unbiased.

        Examples
        --------
        >>> import mcscore as mc
        >>> cmp = mc.compare_estimators(lambda x: x ** 2, mc.Normal(1.0, 1.0), 2000, rng=0,
        ...                             estimators=["score", "score+loo"])
        >>> cmp.best() in cmp.names
        True
        """
        ok = [r for r in self.rows if r["unbiased"]]
        if not ok:
            raise ValueError(
                f"best() compares unbiased estimators, and none of the rows {self.names} is "
                "unbiased (the relaxed estimators are biased); compare work_variance yourself "
                "or run compare_estimators with an unbiased one")
        return min(ok, key=lambda r: r["work_variance"])["name"]

    def table(self) -> str:
        """The comparison as a text table (also the ``repr``), one line per
        estimator, columns aligned.

        Returns
        -------
        str

        Examples
        --------
        >>> import mcscore as mc
        >>> cmp = mc.compare_estimators(lambda x: x ** 2, mc.Normal(1.0, 1.0), 2000, rng=0,
        ...                             estimators=["score", "score+loo"])
        >>> cmp.table().splitlines()[0].split()[:3]
        ['estimator', 'grad[0]', 'stderr[0]']
        """
        head = ["estimator", "grad[0]", "stderr[0]", "variance", "f/sample", "var x f/sample",
                "time s", "var x time"]
        if self.exact is not None:
            head.append("max|z|")
        lines = []
        for r in self.rows:
            g = np.concatenate([np.ravel(v) for v in r["estimate"].values()])
            s = np.concatenate([np.ravel(v) for v in r["stderr"].values()])
            cells = [r["name"] + ("" if r["unbiased"] else " (biased)"), f"{g[0]:.5g}",
                     f"{s[0]:.3g}", f"{r['variance']:.4g}", f"{r['f_evals']:g}",
                     f"{r['eval_variance']:.4g}", f"{r['time']:.3f}",
                     f"{r['work_variance']:.3g}"]
            if self.exact is not None:
                cells.append(f"{r['z']:.2f}")
            lines.append(cells)
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        out.append("  ".join("-" * w for w in widths))
        out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
        return "\n".join(out)

    def __repr__(self) -> str:
        return self.table()

    def plot(self, ax: Any = None) -> Any:
        """Bar chart of the per-sample and work-normalised variances (log
        scale); needs matplotlib.  Returns the axes.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Where to draw (default: a new figure).

        Returns
        -------
        matplotlib.axes.Axes

        Raises
        ------
        ImportError
            Without matplotlib.

        Examples
        --------
        >>> import pytest
        >>> matplotlib = pytest.importorskip("matplotlib")   # the "demo" extra
        >>> matplotlib.use("Agg")
        >>> import mcscore as mc
        >>> cmp = mc.compare_estimators(lambda x: x ** 2, mc.Normal(1.0, 1.0), 2000, rng=0,
        ...                             estimators=["score", "score+loo"])
        >>> ax = cmp.plot()
        >>> len(ax.get_xticklabels()) >= 2
        True
        """
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        names = self.names
        x = np.arange(len(names))
        ax.bar(x - 0.2, [r["variance"] for r in self.rows], 0.4, label="variance per sample")
        ax.bar(x + 0.2, [r["work_variance"] for r in self.rows], 0.4, label="variance x time")
        ax.set_yscale("log")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.legend()
        ax.figure.tight_layout()
        return ax


def compare_estimators(f: Callable[..., Any], dist: Distribution, n: int, *,
                       grad_f: Callable[..., Any] | None = None, rng: Any = None,
                       exact: Mapping[str, ArrayLike] | None = None, temperature: float = 0.5,
                       rloo_k: int = 4, estimators: Sequence[str] | None = None,
                       n_threads: int | None = None) -> Comparison:
    """Run every applicable estimator on the same problem and compare them.

    Score function (plain, "loo" and "optimal" baselines, delta control
    variate when grad_f is given, antithetic for Normal / LogNormal), RLOO
    with ``rloo_k`` draws per sample, pathwise (continuous families with
    grad_f), and for Bernoulli / Categorical the relaxed estimator (biased),
    REBAR (with and without a fitted baseline; with grad_f) and DisARM
    (Bernoulli); and the measure-valued estimator with and without coupling
    (``mvd_grad``: Normal, LogNormal, Exponential, Poisson, Bernoulli,
    Categorical), the second-order delta method (``"delta2"``, with grad_f),
    the pathwise estimator with the delta control variate, the
    per-coordinate context baseline (``ContextBaseline``), RELAX (Bernoulli,
    Categorical: REBAR's surrogate tuned on the variance with grad_f, else a
    linear surrogate, trained on independent draws first), the unordered set
    and sum-and-sample estimators (k = 2, one Categorical variable) and exact
    enumeration (finite supports up to 4096 points; its variance is 0).
    Every estimator gets the same seed (``rng`` is turned into one
    SeedSequence first), so estimators that draw alike share draws.

    Parameters
    ----------
    f : vectorised callable.  For Categorical f takes one-hot encodings
        ``(m, *batch_shape, K)`` (so the relaxed estimators can evaluate it
        on the simplex); the score estimators get it composed with one_hot.
    dist : mcscore distribution
    n : int, samples per estimator
    grad_f : vectorised gradient of f, optional
    exact : optional {param: array}, the true gradient (adds a z column)
    estimators : optional list of names to run (default: all applicable)

    Returns
    -------
    Comparison: a readable table (``repr``), ``rows`` as data, ``plot()``.

    Raises
    ------
    ValueError
        An unknown name in ``estimators``, or one that does not apply to
        ``dist``; the errors of the estimators themselves (see each).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Bernoulli(probs=np.array([0.3, 0.6]))
    >>> cmp = mc.compare_estimators(lambda b: ((b - 0.45) ** 2).sum(axis=-1), q, 1000, rng=0,
    ...                             exact={"probs": np.array([0.1, 0.1])})
    >>> [r["name"] for r in cmp.rows][:3]
    ['score', 'score+loo', 'score+optimal']
    >>> all(abs(r["z"]) < 5 for r in cmp.rows if r["unbiased"])
    True
    >>> print(cmp)          # doctest: +SKIP
    """
    E.check_distribution(dist)
    f = E.check_callable("f", f)
    grad_f = E.check_callable("grad_f", grad_f, required=False)
    temperature = V.positive_real("temperature", temperature)
    rloo_k = V.integer("rloo_k", rloo_k, minimum=2, maximum=1 << 12)
    if estimators is not None:
        if isinstance(estimators, str) or not isinstance(estimators, (list, tuple)):
            raise TypeError(f"estimators must be a list of estimator names, got "
                            f"{type(estimators).__name__} {estimators!r}")
        if not estimators:
            raise ValueError("estimators must name at least one estimator (or be None: all)")
    if exact is not None:
        if not isinstance(exact, dict):
            raise TypeError(f"exact must be a dict {{parameter name: array}}, got "
                            f"{type(exact).__name__}")
        dist._kernel_dist()
        unknown = set(exact) - set(dist._coord_slices)
        if unknown:
            raise ValueError(f"exact: unknown parameter(s) {sorted(unknown)}; {dist!r} has "
                             f"{list(dist._coord_slices)}")
        checked = {}
        for k, v in exact.items():
            a = V.check(f"exact[{k!r}]", V.as_real_array(f"exact[{k!r}]", v), "real")
            pshape = tuple(dist._coord_slices[k][1])
            try:
                checked[k] = np.broadcast_to(a, pshape)
            except ValueError:
                raise ValueError(f"exact[{k!r}] must have shape {pshape}, got {a.shape}") from None
        exact = checked
    # draws are category indices whose relaxed points are one-hot vectors
    is_cat = dist.has_relaxation and dist.relaxed_shape() != dist.draw_shape
    fs = (lambda idx: f(_one_hot(idx, dist.n_categories))) if is_cat else f
    kw = {"rng": V.root_seed_sequence(rng), "n_threads": n_threads}
    ds = dist._kernel_dist().draw_size
    # cross-fitted estimators (fitted baselines, control variates, eta) need
    # draws in two streams: (units, draw size) of their plan
    fitted = {"score+optimal": (n, ds), "score+delta": (n, ds), "antithetic": (n, ds),
              "rebar": (n, int(np.size(dist.logits))) if is_cat else (n, ds)}
    fitted["rebar+optimal"] = fitted["rebar"]
    runs: list[_Run] = [("score", True, 1, lambda: score_grad(fs, dist, n, **kw)),
            ("score+loo", True, 1, lambda: score_grad(fs, dist, n, baseline="loo", **kw)),
            ("score+optimal", True, 1,
             lambda: score_grad(fs, dist, n, baseline="optimal", **kw))]
    if grad_f is not None and not is_cat and dist.has_mean_tangents:
        runs.append(("score+delta", True, 1, lambda: score_grad(
            fs, dist, n, baseline="optimal", control_variates=["delta"], grad_f=grad_f, **kw)))
    if dist.has_mirror:
        runs.append(("antithetic", True, 1, lambda: score_grad(
            fs, dist, 2 * n, antithetic=True, baseline="optimal", **kw)))
    runs.append((f"rloo(k={rloo_k})", True, rloo_k,
                 lambda: rloo_grad(fs, dist, n, k=rloo_k, **kw)))
    if grad_f is not None and dist.has_rsample:
        runs.append(("pathwise", True, 1, lambda: pathwise_grad(f, dist, n, grad_f=grad_f,
                                                                 **kw)))
    if dist.has_relaxation:
        if grad_f is not None:
            runs.append((f"relaxed(tau={temperature:g})", False, 1, lambda: relaxed_grad(
                f, dist, n, grad_f=grad_f, temperature=temperature, **kw)))
            runs.append(("rebar", True, 3, lambda: rebar_grad(
                f, dist, n, grad_f=grad_f, temperature=temperature, **kw)))
            runs.append(("rebar+optimal", True, 3, lambda: rebar_grad(
                f, dist, n, grad_f=grad_f, temperature=temperature, baseline="optimal", **kw)))
        if dist.has_binary_relaxation:
            runs.append(("disarm", True, 2, lambda: disarm_grad(f, dist, n, **kw)))
    runs += _new_runs(f, fs, dist, n, grad_f, is_cat, kw, fitted)
    if estimators is not None:
        wanted = list(estimators)
        known = [r[0] for r in runs]
        bad = [w for w in wanted if w not in known]
        if bad:
            raise ValueError(f"estimators: {bad} not applicable here; choose from {known}")
        runs = [r for r in runs if r[0] in wanted]
    n = V.integer("n", n, minimum=2, maximum=2**61)
    short = {}
    for name, *_ in runs:
        if name in fitted:
            bs = E.default_block_size(*fitted[name])
            if fitted[name][0] <= bs:
                short[name] = bs
    if short:
        raise ValueError(
            f"compare_estimators: {sorted(short)} fit coefficients cross-fitted across streams "
            f"and need draws in at least 2 streams (two blocks of draws): n > "
            f"{max(short.values())}; n={n} fills only one block. Use a larger n, or estimators= "
            "without them")
    rows = []
    for name, unbiased, evals, run in runs:
        t0 = time.perf_counter()
        res = run()
        dt = time.perf_counter() - t0
        evals = res.info.get("f_evals_per_sample", evals)
        var = float(sum(np.sum(v) for v in res.variance.values()))
        samples = res.info.get("samples", res.n)
        if name == "antithetic":  # a sample is a pair: 2 f evaluations
            var = float(sum(np.sum(s**2) for s in res.stderr.values())) * samples
            evals = 2
        se2 = float(sum(np.sum(s**2) for s in res.stderr.values()))
        row = {"name": name, "estimate": res.grad, "stderr": res.stderr, "variance": var,
               "f_evals": evals, "eval_variance": var * evals, "time": dt,
               "work_variance": se2 * dt, "unbiased": unbiased,
               "result": res}
        if exact is not None:
            z = []
            for k, v in exact.items():
                err = np.abs(res.grad[k] - np.asarray(v, float))
                se = res.stderr[k]
                tiny = 1e-12 * (1.0 + np.abs(np.asarray(v, float)))
                with np.errstate(divide="ignore", invalid="ignore"):
                    zk = np.where(se > 0, err / se, np.where(err <= tiny, 0.0, np.inf))
                z.append(np.max(zk))
            row["z"] = float(max(z))
        rows.append(row)
    return Comparison(rows, exact)



ENUMERATION_LIMIT = 4096

# (name, unbiased, f evaluations per sample, the call)
_Run = tuple[str, bool, int, Callable[[], GradientEstimate]]


def _linear_surrogate(D: int) -> NumpySurrogate:
    """c(z) = phi_0 + sum_c phi_c sigmoid(z_c), phi = 0 at the start."""
    def sig(z: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-z.reshape(len(z), -1)))

    return NumpySurrogate(
        lambda z, phi: phi[0] + sig(z) @ phi[1:],
        lambda z, phi: (sig(z) * (1 - sig(z)) * phi[1:]).reshape(z.shape),
        lambda z, phi: np.concatenate([np.ones((len(z), 1)), sig(z)], 1),
        np.zeros(D + 1), lr=0.05)


def _relax_run(f: Any, grad_f: Any, dist: Any, n: int, is_cat: bool,
               kw: dict[str, Any]) -> GradientEstimate:
    """RELAX with its surrogate trained first on independent draws (a child
    of the seed): REBAR's (with grad_f) or a linear one."""
    K = dist.n_categories if is_cat else 1
    s = (RebarSurrogate(f, grad_f, categorical=is_cat) if grad_f is not None
         else _linear_surrogate(dist.draw_size * K))
    root = kw["rng"]
    child = np.random.SeedSequence(root.entropy, pool_size=root.pool_size,
                                   spawn_key=tuple(root.spawn_key) + (2**42,))
    train_surrogate(f, dist, s, steps=100, batch=256, rng=child)
    return relax_grad(f, dist, n, surrogate=s, train_steps=0, **kw)


def _new_runs(f: Any, fs: Any, dist: Any, n: int, grad_f: Any, is_cat: bool, kw: dict[str, Any],
              fitted: dict[str, tuple[int, int]]) -> list[_Run]:
    """The rows of the measure-valued, second-order delta, pathwise control
    variate, context baseline, RELAX, set and enumeration estimators that
    apply to dist."""
    runs = []
    ds = dist._kernel_dist().draw_size
    mvd_ok = type(dist).__name__ in ("Normal", "LogNormal", "Exponential", "Poisson",
                                     "Bernoulli", "Categorical")
    if mvd_ok:
        runs.append(("mvd", True, 2, lambda: mvd_grad(fs, dist, n, **kw)))
        runs.append(("mvd(uncoupled)", True, 2,
                     lambda: mvd_grad(fs, dist, n, coupling=False, **kw)))
    if grad_f is not None and not is_cat and dist.has_mean_tangents:
        try:
            variance_tangents(dist)
        except ValueError:
            pass
        else:
            fitted["score+delta2"] = (n, ds)
            runs.append(("score+delta2", True, 1, lambda: score_grad(
                fs, dist, n, baseline="optimal", control_variates=["delta2"], grad_f=grad_f,
                **kw)))
    if grad_f is not None and dist.has_rsample and not dist.rsample_through_gammas:
        fitted["pathwise+cv"] = (n, ds)
        runs.append(("pathwise+cv", True, 1, lambda: pathwise_cv_grad(
            f, dist, n, grad_f=grad_f, control_variates=["delta"], **kw)))
    t_start = E.score_table(dist)[0]
    if (np.diff(t_start) == 1).all():
        runs.append(("score+context", True, 1 + ds, lambda: score_grad(
            fs, dist, n, baseline=ContextBaseline(), **kw)))
    if type(dist) in (Bernoulli, Categorical):
        runs.append(("relax", True, 1, lambda: _relax_run(f, grad_f, dist, n, is_cat, kw)))
    if type(dist) is Categorical and dist.batch_shape == () and dist.n_categories >= 2:
        runs.append(("unordered-set(k=2)", True, 2,
                     lambda: unordered_set_grad(fs, dist, n, k=2, **kw)))
        runs.append(("sum-and-sample(k=2)", True, 2,
                     lambda: sum_and_sample_grad(fs, dist, n, k=2, **kw)))
    if type(dist) in (Bernoulli, Categorical, Binomial):
        size = support_size(dist, ENUMERATION_LIMIT)
        if size <= ENUMERATION_LIMIT:
            runs.append(("enumeration", True, size, lambda: enumerate_grad(fs, dist)))
    return runs
