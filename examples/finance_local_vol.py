"""Local volatility: Greeks of a digital under a skewed sigma(t, S)
================================================================

The model is a one-factor diffusion of log S given by its drift and
diffusion functions (``finance.Diffusion``), simulated by Euler steps:

    d log S = (r - sigma(S)^2 / 2) dt + sigma(S) dW,
    sigma(S) = base + skew * (100 / S - 1)          (higher vol below 100)

Each Euler step is Gaussian given the past, so the likelihood-ratio weight
of a model parameter is a sum over steps of Gaussian scores: the digital's
delta, gamma and its sensitivities to ``base`` and ``skew`` come from one
run, with standard errors.  With skew = 0 the model is Black-Scholes, and
the run is checked against the closed form (z-scores).

    python examples/finance_local_vol.py            # full run
    python examples/finance_local_vol.py --quick    # a few seconds (CI)
"""
import argparse

import numpy as np

import mcscore as mc

fi = mc.finance
RATE, MATURITY, STEPS, SPOT, STRIKE = 0.03, 1.0, 24, 100.0, 105.0


def local_vol(base, skew):
    def sigma(t, x, base, skew):
        return np.maximum(base + skew * (100.0 * np.exp(-x) - 1.0), 0.01)

    def drift(t, x, base, skew):
        return RATE - 0.5 * sigma(t, x, base, skew) ** 2

    return fi.Diffusion(drift, sigma, dict(base=base, skew=skew), log=True)


def digital(paths):
    return (paths[:, -1, 0] > STRIKE).astype(float)


def main(argv=None):
    p = argparse.ArgumentParser(description=(__doc__ or "").strip().split("\n")[0])
    p.add_argument("--quick", action="store_true", help="short run (CI)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    n = 50_000 if args.quick else 400_000
    kw = dict(spot=SPOT, rate=RATE, maturity=MATURITY, steps=STEPS, n=n, rng=args.seed)
    g = fi.greeks(digital, model=local_vol(0.2, 0.3), **kw)
    print(f"digital call K={STRIKE} under local vol, {n} paths, {STEPS} Euler steps")
    print(g)
    # check: no skew is Black-Scholes (the Euler step in log S is exact)
    flat = fi.greeks(digital, model=local_vol(0.2, 0.0), **kw)
    bs = fi.black_scholes("digital_call", spot=SPOT, strike=STRIKE, rate=RATE, vol=0.2,
                          maturity=MATURITY)
    z = {"price": (flat.price - bs["price"]) / flat.stderr["price"],
         "delta": (flat.delta - bs["delta"]) / flat.stderr["delta"],
         "base": (flat.base - bs["vega"]) / flat.stderr["base"]}
    print("check, skew = 0 vs Black-Scholes: z =", {k: round(v, 2) for k, v in z.items()})
    return {"greeks": g, "z": z}


if __name__ == "__main__":
    main()
