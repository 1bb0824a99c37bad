"""GradientEstimate: what every gradient estimator returns."""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["GradientEstimate"]


def _fmt(a):
    a = np.asarray(a)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return np.array2string(a, precision=5, threshold=8, edgeitems=2, separator=", ")


class GradientEstimate:
    """The result of a gradient estimator.

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
        Estimate of E[f] and its standard error.
    n : int
        Draws used.
    baseline : None, float, "loo" or "optimal"
    method : str
        Which estimator produced this ("score", ...).
    sampler : "mc" or "sobol"
        "sobol": randomised quasi-Monte Carlo, ``n_randomizations``
        independent randomisations (stderr from their spread).
    """

    sampler = "mc"
    n_randomizations = None

    def __init__(self, grad, stderr, variance, value, value_stderr, n, *, baseline=None,
                 method="score", value_variance=None, info=None):
        self.grad = grad
        self.stderr = stderr
        self.variance = variance
        self.value = float(value)
        self.value_stderr = float(value_stderr)
        self.value_variance = (float(value_variance) if value_variance is not None
                               else self.value_stderr**2 * n)
        self.n = int(n)
        self.baseline = baseline
        self.method = method
        self.info = dict(info or {})

    def z_scores(self, exact):
        """(estimate - exact) / stderr for each parameter in ``exact``."""
        return {k: (self.grad[k] - np.asarray(v)) / self.stderr[k] for k, v in exact.items()}

    def confidence_interval(self, level=0.95):
        """Normal-approximation intervals {name: (low, high)}; ``level`` in
        (0, 1)."""
        from scipy.stats import norm

        if (isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Real)
                or not 0 < float(level) < 1):
            raise ValueError(f"level must be a number in (0, 1) (e.g. 0.95), got {level!r}")
        z = norm.ppf(0.5 + float(level) / 2)
        return {k: (g - z * self.stderr[k], g + z * self.stderr[k]) for k, g in self.grad.items()}

    def __repr__(self):
        b = self.baseline if not isinstance(self.baseline, float) else f"{self.baseline:g}"
        lines = [f"GradientEstimate(method={self.method!r}, n={self.n}, baseline={b!r})"]
        lines.append(f"  value: {_fmt(self.value)} +/- {_fmt(self.value_stderr)}")
        for k in self.grad:
            lines.append(f"  grad[{k!r}]: {_fmt(self.grad[k])}")
            lines.append(f"  {'stderr':>{len(k) + 6}}: {_fmt(self.stderr[k])}")
        return "\n".join(lines)

