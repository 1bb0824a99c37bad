"""mcscore: fast score-function gradient estimators with honest error bars.

    import numpy as np
    import mcscore as mc

    q = mc.Normal(loc=np.zeros(3), scale=np.ones(3))
    res = mc.score_grad(lambda x: (x ** 2).sum(axis=-1), q, n=10**6, rng=0)
    res.grad["loc"], res.stderr["scale"], res.value
"""
from ._version import __version__  # noqa: F401
from . import integrands
from . import finance, rl, vi
from ._config import effective_n_threads, show_config
from .distributions import (
    FAMILIES,
    Bernoulli,
    Beta,
    Binomial,
    Categorical,
    Chi2,
    Dirichlet,
    Distribution,
    Exponential,
    Gamma,
    Geometric,
    Gumbel,
    HalfNormal,
    InverseGamma,
    Joint,
    Laplace,
    LogNormal,
    LowRankMultivariateNormal,
    Multinomial,
    MultivariateNormal,
    NegativeBinomial,
    Normal,
    Poisson,
    Weibull,
)
from .distributions import (  # issue 13's families
    Cauchy, HalfCauchy, OneHotCategorical, StudentT, Uniform, VonMises,
)
from .compare import Comparison, compare_estimators
from .discrete import disarm_grad, rebar_grad, relaxed_grad
from .pathwise import pathwise_grad
from .prepared import Estimator
from .result import GradientEstimate
from .score import (
    CALLBACK_SIGNATURES,
    default_block_size,
    rloo_grad,
    score_grad,
    score_grad_from_samples,
)
from .relaxed import RelaxedBernoulli, RelaxedOneHotCategorical
from .baselines import ContextBaseline, MovingAverageBaseline
from .enumeration import enumerate_grad, enumeration_advice
from .measure_valued import mvd_grad
from .pathwise import pathwise_cv_grad
from .relax import NumpySurrogate, RebarSurrogate, TorchSurrogate, relax_grad, tune_rebar
from .unordered_set import sum_and_sample_grad, unordered_set_grad
from ._qmc import QMCWarning

__all__ = [
    "Bernoulli", "Beta", "Binomial", "Categorical", "Chi2", "Dirichlet", "Distribution",
    "Estimator", "Exponential", "FAMILIES", "Gamma", "Geometric", "GradientEstimate", "Gumbel",
    "HalfNormal", "InverseGamma", "Joint", "Laplace", "LogNormal",
    "Multinomial", "NegativeBinomial", "Normal", "Poisson", "Weibull", "CALLBACK_SIGNATURES",
    "MultivariateNormal", "LowRankMultivariateNormal",
    "default_block_size", "effective_n_threads", "finance", "integrands", "rl", "vi", "score_grad",
    "score_grad_from_samples", "show_config",
    "Comparison", "compare_estimators", "disarm_grad", "pathwise_grad", "rebar_grad",
    "relaxed_grad", "rloo_grad", "RelaxedBernoulli", "RelaxedOneHotCategorical",
    "Uniform", "StudentT", "Cauchy", "HalfCauchy", "VonMises", "OneHotCategorical",
    "ContextBaseline", "MovingAverageBaseline", "enumerate_grad", "enumeration_advice",
    "mvd_grad", "pathwise_cv_grad", "NumpySurrogate", "RebarSurrogate", "TorchSurrogate",
    "relax_grad", "tune_rebar", "sum_and_sample_grad", "unordered_set_grad",
    "QMCWarning",
]
