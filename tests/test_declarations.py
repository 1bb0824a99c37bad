"""Families declare their parameters (arg_constraints, fixed_params): the
base class validates, broadcasts and exposes them from the declaration."""
import numpy as np
import pytest

import mcscore as mc

DECLARED = {
    mc.Normal: (0.5, [1.0, 2.0]),
    mc.LogNormal: ([0.1, 0.2], 0.5),
    mc.Laplace: (0.0, [[1.0], [3.0]]),
    mc.Exponential: ([1.0, 2.0],),
    mc.Gamma: (2.0, [1.0, 0.5]),
    mc.Beta: ([2.0, 0.5], 1.5),
    mc.Poisson: ([1.5, 4.0],),
    mc.Dirichlet: ([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]],),
}


@pytest.mark.parametrize("cls", list(DECLARED), ids=lambda c: c.__name__)
def test_declared_parameters_drive_params_properties_and_shapes(cls):
    args = DECLARED[cls]
    d = cls(*args)
    names = tuple(cls.arg_constraints)
    assert d.param_names == names
    event = cls.event_ndim
    shapes = [np.shape(a)[:len(np.shape(a)) - event] for a in args]
    assert d.batch_shape == np.broadcast_shapes(*shapes)
    for name, a in zip(names, args):
        assert np.array_equal(getattr(d, name), np.asarray(a, float))
        with pytest.raises(AttributeError):
            setattr(d, name, a)
    p0, p1 = d._draw_params()  # the default layout: each broadcast to the batch
    assert np.shape(p0)[:len(d.batch_shape)] == d.batch_shape
    assert np.shape(p1)[:len(d.batch_shape)] == d.batch_shape


@pytest.mark.parametrize("cls", list(DECLARED), ids=lambda c: c.__name__)
def test_each_declared_constraint_is_enforced_naming_the_argument(cls):
    args = list(DECLARED[cls])
    for i, (name, constraint) in enumerate(cls.arg_constraints.items()):
        if constraint != "positive":
            continue
        bad = list(args)
        bad[i] = -np.abs(np.asarray(args[i], float))
        with pytest.raises(ValueError, match=name):
            cls(*bad)


def test_fixed_parameters_are_declared_and_shown():
    for d in (mc.Binomial(5, probs=0.3), mc.NegativeBinomial(3.0, logits=0.2),
              mc.Multinomial(4, probs=[0.2, 0.8])):
        assert "total_count" in type(d).fixed_params
        assert "total_count=" in repr(d)
        assert "total_count" not in d.param_names
