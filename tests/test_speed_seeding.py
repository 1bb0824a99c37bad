"""Seeding a call's root stream in C (kernels.pcg64_seed_state) gives the
state NumPy's PCG64(SeedSequence(entropy)) has, and a Generator-seeded call
is still the call seeded by SeedSequence(four raw words of the generator)."""
import numpy as np
import pytest

import mcscore as mc
from mcscore import _kernels as K


def _cases():
    rng = np.random.default_rng(0)
    out = [0, 1, 7, 2**32 - 1, 2**32, 2**64 - 1, 2**64, 2**100 + 5, 20240601, [0], [0, 0, 0, 0],
           [1, 2, 3, 4], [2**63, 5, 2**33, 0], list(range(1, 10))]
    for _ in range(200):
        k = int(rng.integers(1, 7))
        out.append([int(w) for w in rng.integers(0, 2**64, size=k, dtype=np.uint64)])
    return out


def test_pcg64_seed_state_is_numpys():
    for entropy in _cases():
        assert K.pcg64_seed_state(entropy) == np.random.PCG64(
            np.random.SeedSequence(entropy)).state, entropy


def test_pcg64_seed_state_rejects_negative_entropy():
    with pytest.raises(ValueError, match="non-negative"):
        K.pcg64_seed_state([1, -2])


@pytest.mark.parametrize("n", [100, 5000])
def test_generator_call_is_the_seed_sequence_call(n):
    q = mc.Normal(np.zeros(3), np.ones(3))

    def f(x):
        return (x * x).sum(1)

    g = np.random.default_rng(42)
    words = np.random.default_rng(42).bit_generator.random_raw(4)
    a = mc.score_grad(f, q, n, rng=g)
    b = mc.score_grad(f, q, n, rng=np.random.SeedSequence([int(w) for w in words]))
    for k in a.grad:
        assert np.array_equal(a.grad[k], b.grad[k]) and np.array_equal(a.stderr[k], b.stderr[k])
    assert a.info == b.info
    # the generator advanced by the four words, as NumPy's own methods would
    h = np.random.default_rng(42)
    h.bit_generator.random_raw(4)
    assert g.bit_generator.state == h.bit_generator.state
