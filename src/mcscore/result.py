"""GradientEstimate: what every gradient estimator returns."""
from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

# A float for one expectation, an array of the batch's shape for batched ones.
Real = Union[float, NDArray[np.float64]]

__all__ = ["GradientEstimate", "LinearEstimate"]


def _fmt(a: ArrayLike) -> str:
    a = np.asarray(a)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return np.array2string(a, precision=5, threshold=8, edgeitems=2, separator=", ")


class GradientEstimate:
    """The result of a gradient estimator.

    Built by the estimators (:func:`~mcscore.score_grad`,
    :func:`~mcscore.pathwise_grad`, ...), not by hand.

    Parameters
    ----------
    grad, stderr, variance : dict of str to array_like
        The estimate, its standard errors and the per-draw variances, one
        entry per parameter (see the attributes).
    value, value_stderr : float or array_like
        The estimate of E[f] and its standard error.
    n : int
        The draws used.
    baseline : None, float, "loo" or "optimal", optional
        The baseline the estimator used.
    method : str, default "score"
        The estimator's name.
    value_variance : float or array_like, optional
        The per-draw variance of f (default ``value_stderr**2 * n``).
    info : mapping, optional
        Diagnostics (streams, block size, thread count, ...).
    cov : array_like or None, optional
        The (P, P) covariance, when the estimator computed it directly.
    batch : object, optional
        The engine's per-stream means, from which ``cov`` is computed on demand.

    Raises
    ------
    TypeError
        ``value`` or ``n`` that is not a number.

    Attributes
    ----------
    grad : dict[str, ndarray]
        Estimate of d E[f] / d theta for each parameter the distribution was
        given, shaped like that parameter.
    stderr : dict[str, ndarray]
        Monte Carlo standard errors of ``grad``, same shapes.
    variance : dict[str, ndarray]
        Per-draw variance of the averaged terms (``stderr**2 * n``): the
        figure to compare estimators by.
    value, value_stderr : float
        Estimate of E[f] and its standard error (arrays of the batch shape
        for batched expectations, ``batch_ndims > 0``).
    n : int
        Draws used.
    baseline : None, float, "loo" or "optimal"
    method : str
        Which estimator produced this ("score", ...).
    cov : ndarray (P, P)
        Estimated covariance matrix of the flattened gradient (see
        :meth:`coordinates` for the order of its rows); :meth:`linear` gives
        the estimate and standard error of a linear map of the gradient.
    sampler : "mc" or "sobol"
        "sobol": randomised quasi-Monte Carlo, ``n_randomizations``
        independent randomisations (stderr from their spread).

    Notes
    -----
    **Covariance.** The P coordinates are the parameters of ``grad`` in its key order, each
    raveled in C order (``coordinates()`` names them, e.g. ``"loc[0]"``).
    The engine's estimators (every baseline of ``score_grad``,
    ``rloo_grad``, ``pathwise_grad``, control variates and antithetic pairs,
    the relaxed / REBAR / DisARM estimators, on Dask too) take it by batch
    means across streams: each stream's mean of the per-draw terms is an
    independent estimate, and ``cov`` is the covariance of their weighted
    deviations from the grand mean, ``sum_s c_s (m_s - m)(m_s - m)^T /
    ((S - 1) n)`` (c_s draws in stream s, n = sum c_s; unbiased for a plain
    mean).  It costs O(S P) memory (the per-stream means: no n x P storage,
    nothing per draw) and is computed when first asked for: ``linear(J)`` in
    O(k S P) without the P x P matrix, ``cov`` in O(S P^2).  It has S - 1
    degrees of freedom (``info["streams_used"] - 1``: 63 with the default 64
    streams once n fills them, i.e. n >= 64 blocks of at least 256 draws;
    below that pass a smaller ``block_size``, e.g. n // 64, and for more
    ``n_streams=``), so its diagonal
    agrees with ``stderr**2`` (taken from the per-draw sums of squares, n - 1
    degrees of freedom) to about sqrt(2 / (S - 1)) relative (18% at S = 64)
    rather than exactly; in exchange every linear map is consistent (a
    contrast that cancels exactly has standard error 0).  Estimators on
    samples held in memory (``score_grad_from_samples``, ``rl.reinforce``)
    give the sample covariance of their per-sample terms (O(m P^2) once).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> q = mc.Normal(loc=np.zeros(2), scale=np.ones(2))
    >>> res = mc.score_grad(lambda x: x.sum(axis=-1), q, 10_000, rng=0)
    >>> res.coordinates()
    ['loc[0]', 'loc[1]', 'scale[0]', 'scale[1]']
    >>> res.cov.shape
    (4, 4)
    >>> z = (res.grad["loc"] - 1.0) / res.stderr["loc"]     # exact: d E[x0 + x1] / d loc = 1
    >>> bool(np.all(np.abs(z) < 5))
    True
    """

    sampler: str = "mc"
    n_randomizations: int | None = None

    def __init__(self, grad: dict[str, Any], stderr: dict[str, Any],
                 variance: dict[str, Any], value: ArrayLike, value_stderr: ArrayLike,
                 n: int, *, baseline: Any = None, method: str = "score",
                 value_variance: ArrayLike | None = None,
                 info: Mapping[str, Any] | None = None, cov: ArrayLike | None = None,
                 batch: Any = None) -> None:
        self.grad = grad
        self.stderr = stderr
        self.variance = variance
        # batched expectations (batch_ndims > 0): arrays of the batch shape
        real: Callable[[Any], Real] = (
            float if type(value) is float or np.ndim(value) == 0
            else (lambda v: np.asarray(v, dtype=np.float64)))
        self.value = real(value)
        self.value_stderr = real(value_stderr)
        self.value_variance = (real(value_variance) if value_variance is not None
                               else self.value_stderr**2 * n)
        self.n = int(n)
        self.baseline = baseline
        self.method = method
        self.info = dict(info or {})
        # the covariance: a (P, P) matrix (samples held in memory), or the
        # per-stream means (count (S,), means (S, P)) -- or a callable giving
        # them when first needed -- whose correlations the batch-means
        # covariance takes (see the class docstring)
        self._cov_matrix: NDArray[np.float64] | None = (
            None if cov is None else np.asarray(cov, dtype=np.float64))
        self._batch = batch
        self._factor: NDArray[np.float64] | None = None

    @classmethod
    def _of_score(cls, grad: dict[str, Any], stderr: dict[str, Any], variance: dict[str, Any],
                  value: float, value_stderr: float, n: int, baseline: Any,
                  value_variance: float, info: dict[str, Any], batch: Any) -> GradientEstimate:
        """The estimate __init__ builds from these arguments (method "score",
        one expectation: Python floats for value, value_stderr and
        value_variance, a Python int n, an info dict of the caller's own),
        without the conversions those make unnecessary: the small calls'
        result."""
        self = cls.__new__(cls)
        self.grad, self.stderr, self.variance = grad, stderr, variance
        self.value, self.value_stderr, self.value_variance = value, value_stderr, value_variance
        self.n, self.baseline, self.method, self.info = n, baseline, "score", info
        self._cov_matrix, self._batch, self._factor = None, batch, None
        return self

    # -- covariance ---------------------------------------------------------
    def coordinates(self) -> list[str]:
        """Names of the P coordinates of the flattened gradient, in the
        order of ``cov``'s rows: each parameter of ``grad`` in key order,
        raveled in C order (``"loc"`` for a scalar, ``"scale[2]"``,
        ``"logits[1, 0]"``).

        Returns
        -------
        list of str
            P names.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> res = mc.score_grad(lambda x: x.sum(axis=-1), mc.Normal(np.zeros(2), 1.0), 1000, rng=0)
        >>> res.coordinates()
        ['loc[0]', 'loc[1]', 'scale']
        """
        out: list[str] = []
        for k, g in self.grad.items():
            g = np.asarray(g)
            if g.ndim == 0:
                out.append(k)
            else:
                out.extend(f"{k}[{', '.join(map(str, i))}]" for i in np.ndindex(g.shape))
        return out

    def _flat(self, d: Mapping[str, Any]) -> NDArray[np.float64]:
        return np.concatenate([np.ravel(np.asarray(d[k], dtype=np.float64)) for k in self.grad])

    @property
    def n_coords(self) -> int:
        """P, the number of coordinates of the flattened gradient."""
        return sum(int(np.size(g)) for g in self.grad.values())

    def _cov_factor(self) -> NDArray[np.float64]:
        """F (S, P) with cov = F.T @ F: the streams' deviations from the
        grand mean, sqrt(count_s) (mean_s - grand) / sqrt((S - 1) n)."""
        if self._factor is None:
            batch = self._batch() if callable(self._batch) else self._batch
            count, means = (np.asarray(a, dtype=np.float64) for a in batch)
            keep = count > 0
            count, means = count[keep], means[keep].reshape(int(keep.sum()), -1)
            if len(count) < 2:
                raise ValueError(
                    f"the covariance of this estimate ({self.method}, n={self.n}) is taken by "
                    "batch means across streams and needs draws in at least 2 streams; its n "
                    "fills only one block: use a larger n, a smaller block_size or more "
                    "n_streams")
            total = count.sum()
            grand = count @ means / total
            with np.errstate(over="ignore", invalid="ignore"):
                F = (np.sqrt(count / ((len(count) - 1) * total))[:, None]
                     * (means - grand))
            self._factor = F
            self._batch = None
        return self._factor

    def _has_cov(self) -> bool:
        return self._cov_matrix is not None or self._batch is not None or (
            self._factor is not None)

    def _no_cov(self) -> ValueError:
        return ValueError(
            f"this GradientEstimate (method={self.method!r}) carries no covariance: it was "
            "built without the per-stream or per-sample terms the covariance is taken from")

    @property
    def cov(self) -> NDArray[np.float64]:
        """Estimated covariance matrix (P, P) of the flattened gradient (row
        order: ``coordinates()``; see the class docstring for how it is
        taken)."""
        if self._cov_matrix is not None:
            copy: NDArray[np.float64] = self._cov_matrix.copy()
            return copy
        if not self._has_cov():
            se = self._flat(self.stderr)
            if se.size == 1:
                return np.array([[se[0] ** 2]])
            raise self._no_cov()
        F = self._cov_factor()
        out: NDArray[np.float64] = F.T @ F
        return out

    def _functionals(self, J: Any) -> tuple[NDArray[np.float64], bool]:
        """J as a (k, P) matrix and whether it was one functional."""
        P = self.n_coords
        if isinstance(J, dict):
            unknown = [k for k in J if k not in self.grad]
            if unknown:
                raise ValueError(f"J names unknown parameter(s) {unknown}; the gradient has "
                                 f"{list(self.grad)}")
            rows = []
            for k, g in self.grad.items():
                if k not in J:
                    rows.append(np.zeros(np.size(g)))
                    continue
                a = np.asarray(J[k], dtype=np.float64)
                if a.shape != np.shape(g):
                    raise ValueError(f"J[{k!r}] must have the shape of grad[{k!r}], "
                                     f"{np.shape(g)}, got {a.shape}")
                rows.append(a.ravel())
            return np.concatenate(rows)[None, :], True
        try:
            A = np.asarray(J, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("J must be a (k, P) or (P,) array of numbers or a dict of arrays "
                            f"shaped like grad, got {type(J).__name__}") from None
        single = A.ndim == 1
        A = A[None, :] if single else A
        if A.ndim != 2 or A.shape[1] != P:
            raise ValueError(f"J must have shape (k, {P}) or ({P},) (P = {P} coordinates, "
                             f"see coordinates()), got {np.shape(J)}")
        if not np.isfinite(A).all():
            raise ValueError("J must be finite")
        return A, single

    def linear(self, J: ArrayLike | Mapping[str, ArrayLike]) -> LinearEstimate:
        """Estimate, standard error and covariance of ``J @ grad``: a chain
        rule, a sum or a contrast of the gradient's coordinates.

        The batch-means covariance is applied as a factor, O(k S P), without
        forming the P x P matrix.

        Parameters
        ----------
        J : array of shape (k, P) or (P,), or dict
            Rows over the coordinates of :meth:`coordinates`, or a dict
            ``{name: array shaped like grad[name]}`` (missing names count
            as 0) for one linear functional.

        Returns
        -------
        LinearEstimate
            ``estimate`` and ``stderr`` (scalars for a (P,) array or a
            dict, (k,) arrays for a (k, P) matrix) and ``cov`` (k, k).

        Raises
        ------
        ValueError
            ``J`` of the wrong shape (the message gives P), an unknown
            name in the dict, or non-finite entries.

        Examples
        --------
        >>> import numpy as np
        >>> import mcscore as mc
        >>> res = mc.score_grad(lambda x: x[:, 0] - x[:, 1], mc.Normal(loc=np.ones(2), scale=0.5),
        ...                     10_000, rng=0)
        >>> res.coordinates()                         # a broadcast scalar scale: one coordinate
        ['loc[0]', 'loc[1]', 'scale']
        >>> contrast = res.linear({"loc": np.array([1.0, -1.0])})   # exact: 1 - (-1) = 2
        >>> bool(abs(contrast.estimate - 2.0) < 5 * contrast.stderr)
        True
        >>> res.linear(np.eye(3)).cov.shape
        (3, 3)
        """
        A, single = self._functionals(J)
        est = A @ self._flat(self.grad)
        if self._cov_matrix is not None:
            C = A @ self._cov_matrix @ A.T
        elif self._has_cov():
            AF = A @ self._cov_factor().T
            C = AF @ AF.T
        else:
            C = A @ self.cov @ A.T
        C = (C + C.T) / 2
        sd = np.sqrt(np.maximum(np.diagonal(C), 0.0))
        if single:
            return LinearEstimate(float(est[0]), float(sd[0]), C)
        return LinearEstimate(est, sd, C)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if callable(state.get("_batch")):  # materialise a lazy source before pickling
            try:
                state["_factor"] = self._cov_factor()
            except ValueError:
                pass
            state["_batch"] = None
        return state

    def z_scores(self, exact: Mapping[str, ArrayLike]) -> dict[str, Any]:
        """(estimate - exact) / stderr for each parameter in ``exact``.

        Parameters
        ----------
        exact : mapping of str to array_like
            Exact gradients for some or all parameters, each broadcastable to
            the parameter's shape.

        Returns
        -------
        dict of str to numpy.ndarray or float
            The z-score of each parameter given (an absolute value above 5
            is a red flag).

        Raises
        ------
        KeyError
            A name in ``exact`` that is not a parameter of ``grad``.
        ValueError
            An exact value that does not broadcast to the parameter's shape.

        Examples
        --------
        >>> import mcscore as mc
        >>> res = mc.score_grad(lambda x: x ** 2, mc.Normal(loc=1.0, scale=1.0), 10_000, rng=0)
        >>> z = res.z_scores({"loc": 2.0, "scale": 2.0})       # exact: 2 loc, 2 scale
        >>> all(abs(v) < 5 for v in z.values())
        True
        """
        return {k: (self.grad[k] - np.asarray(v)) / self.stderr[k] for k, v in exact.items()}

    def confidence_interval(self, level: float = 0.95) -> dict[str, tuple[Any, Any]]:
        """Normal-approximation intervals {name: (low, high)}; ``level`` in
        (0, 1).

        Parameters
        ----------
        level : float, default 0.95
            The coverage, in (0, 1).

        Returns
        -------
        dict of str to tuple
            ``{name: (low, high)}``, each shaped like the parameter.

        Raises
        ------
        ValueError
            ``level`` not a number in (0, 1).

        Examples
        --------
        >>> import mcscore as mc
        >>> res = mc.score_grad(lambda x: x ** 2, mc.Normal(loc=1.0, scale=1.0), 10_000, rng=0)
        >>> lo, hi = res.confidence_interval(0.99)["loc"]     # d E[x^2] / d loc = 2 loc = 2
        >>> bool(lo < 2.0 < hi)
        True
        """
        from scipy.stats import norm

        if (isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real)
                or not 0 < float(level) < 1):
            raise ValueError(f"level must be a number in (0, 1) (e.g. 0.95), got {level!r}")
        z = norm.ppf(0.5 + float(level) / 2)
        return {k: (g - z * self.stderr[k], g + z * self.stderr[k]) for k, g in self.grad.items()}

    def __repr__(self) -> str:
        b = self.baseline if not isinstance(self.baseline, float) else f"{self.baseline:g}"
        lines = [f"GradientEstimate(method={self.method!r}, n={self.n}, baseline={b!r})"]
        lines.append(f"  value: {_fmt(self.value)} +/- {_fmt(self.value_stderr)}")
        for k in self.grad:
            lines.append(f"  grad[{k!r}]: {_fmt(self.grad[k])}")
            lines.append(f"  {'stderr':>{len(k) + 6}}: {_fmt(self.stderr[k])}")
        return "\n".join(lines)



def terms_cov(y: ArrayLike) -> NDArray[np.float64]:
    """The sample covariance matrix (P, P) of the mean of m per-sample
    terms y (m, P)."""
    y = np.asarray(y, dtype=np.float64)
    m = len(y)
    with np.errstate(over="ignore", invalid="ignore"):
        z = y - y.mean(0)
        out: NDArray[np.float64] = (z.T @ z) / ((m - 1) * m)
        return out


class LinearEstimate:
    """A linear map ``J @ grad`` of a gradient estimate: ``estimate``,
    ``stderr`` (scalars for one functional, (k,) arrays otherwise) and
    ``cov`` ((k, k), always 2-d).

    Parameters
    ----------
    estimate : float or numpy.ndarray
        ``J @ grad``.
    stderr : float or numpy.ndarray
        Its standard error(s).
    cov : numpy.ndarray, shape (k, k)
        The estimated covariance of ``J @ grad``.

    Raises
    ------
    TypeError
        A missing argument (the values are not checked: estimators and
        :meth:`GradientEstimate.linear` build it).

    Examples
    --------
    >>> import numpy as np
    >>> import mcscore as mc
    >>> res = mc.score_grad(lambda x: x.sum(axis=-1), mc.Normal(np.zeros(2), np.ones(2)), 10_000, rng=0)
    >>> est, se = res.linear({"loc": [1.0, 1.0]})          # d E / d loc0 + d E / d loc1 = 2
    >>> bool(abs(est - 2.0) < 5 * se)
    True
    """

    def __init__(self, estimate: Real, stderr: Real, cov: NDArray[np.float64]) -> None:
        self.estimate = estimate
        self.stderr = stderr
        self.cov = cov

    def __iter__(self) -> Iterator[Real]:  # est, se = res.linear(J)
        return iter((self.estimate, self.stderr))

    def __repr__(self) -> str:
        return f"LinearEstimate(estimate={_fmt(self.estimate)}, stderr={_fmt(self.stderr)})"
