"""Compatibility alias: the estimators now live in modules named after
them (:mod:`mcscore.score`, :mod:`mcscore.pathwise`,
:mod:`mcscore.discrete`, :mod:`mcscore.compare`)."""
from .compare import Comparison, compare_estimators  # noqa: F401
from .discrete import TEMPERATURE_GRID, disarm_grad, rebar_grad, relaxed_grad  # noqa: F401
from .pathwise import pathwise_grad  # noqa: F401
from .score import rloo_grad  # noqa: F401
