"""The docstring fragments the rl modules name by %(name)s (see mcscore._docs)."""
from __future__ import annotations

DOC_FRAGMENTS = {
    "features": """\
features : array_like, shape ``(*batch, n_features)``
    The states' features.""",
    "bad_features": """\
ValueError
    Features of the wrong length or not finite.""",
    "rng_spec7": """\
rng : None, int, SeedSequence or Generator
    The randomness (SPEC 7).""",
    "h_dh": """\
tuple
    ``(H, dH)``: H of shape ``features.shape[:-1]``, dH a dict like
    :meth:`score`'s.""",
    "softmax_setup": """\
>>> import numpy as np
>>> import mcscore as mc
>>> pol = mc.rl.SoftmaxPolicy(n_features=3, n_actions=2)
>>> s = np.ones((4, 3))""",
    "gaussian_setup": """\
>>> import numpy as np
>>> import mcscore as mc
>>> pol = mc.rl.GaussianPolicy(n_features=3, n_actions=2, log_std=-1.0)
>>> s = np.ones((4, 3))""",
    "torch_setup": """\
%(torch_import)s
>>> pol = mc.rl.TorchPolicy(torch.nn.Linear(5, 2, dtype=torch.float64))""",
    "nonfinite_features": """\
ValueError
    Non-finite features.""",
    "gym_setup": """\
>>> import numpy as np
>>> import mcscore as mc
>>> class Still:
...     def reset(self, seed=None):
...         return np.zeros(2), {}
...     def step(self, action):""",
    "env_reset": """\
Parameters
----------
n : int
    The number of episodes (>= 1).
rng : None, int, SeedSequence or Generator
    The randomness.

Returns
-------
numpy.ndarray
    The initial states, one row an episode (the shape above).

Raises
------
ValueError
    ``n`` < 1.""",
    "entropy_io": """\
Parameters
----------
%(features)s

Returns
-------
%(h_dh)s""",
    "raises_bad_features": """\
Raises
------
%(bad_features)s""",
    "features_rng": """\
%(features)s
%(rng_spec7)s""",
    "raises_nonfinite": """\
Raises
------
%(nonfinite_features)s""",
}
