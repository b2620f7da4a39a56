"""How surprised is the transition model by what it has seen, and by what it has not?

    python benchmarks/novelty.py                      # MountainCar-v0, 8,000 steps, seed 0
    python benchmarks/novelty.py --steps 20000 --raw  # the author's raw error

Trains dai.py with lambda = 0 (so exploration is by the policy's entropy alone), then
prints the epistemic value e (dai.epistemic_value, before the cap, so the spread shows) of the
transitions in the replay buffer, and of transitions from two MountainCar regions the agent has
not reached: the far left wall at speed, and the slope up to the goal at speed. Their next
states come from MountainCar's own equations (gymnasium's mountain_car.py).
"""

import argparse
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import dai  # noqa: E402

UNSEEN = {"left wall, moving left": ((-1.2, -0.9), (-0.06, -0.02)),
          "goal slope, moving right": ((-0.2, 0.5), (0.02, 0.06))}


def mountain_car_step(s, a):
    """MountainCar-v0's dynamics: force 0.001, gravity 0.0025, speed capped at 0.07."""
    v = np.clip(s[:, 1] + (a - 1) * 0.001 - 0.0025 * np.cos(3 * s[:, 0]), -0.07, 0.07)
    x = np.clip(s[:, 0] + v, -1.2, 0.6)
    return np.stack([x, np.where((x == -1.2) & (v < 0), 0.0, v)], axis=1).astype(np.float32)


def novelty(params, s, a, s_next, stats, raw):
    """e per transition, uncapped: eps / obs_dim (standardised) or eps (raw)."""
    d = dai.transition_target(s, s_next, stats, raw)
    eps = dai.prediction_error(params["transition"], s, dai.one_hot(a, 3), d)
    return eps if raw else eps / s.shape[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="the author's raw error (--raw-epistemic)")
    args = parser.parse_args()
    cfg = dai.Config(env_id="MountainCar-v0", total_steps=args.steps, seed=args.seed, raw_epistemic=args.raw,
                     epistemic_weight=0.0, eval_every=0)
    buffers = []
    real_init = dai.buffer_init
    dai.buffer_init = lambda *a: buffers.append(real_init(*a)) or buffers[-1]  # keep the training buffer
    params, _ = dai.train(cfg, progress=None)
    buf = buffers[0]
    n = buf["size"]
    s, a, s_next = buf["s"][:n], buf["a"][:n], buf["s_next"][:n]
    seen = novelty(params, s, a, s_next, buf["delta_stats"], args.raw)
    pct = lambda e: " ".join(f"{x:.2g}" for x in np.percentile(e, [10, 50, 90, 99.9]))
    print(f"# MountainCar-v0, {args.steps} steps with lambda = 0, seed {args.seed}, {'raw' if args.raw else 'standardised'} error")
    print(f"# percentiles 10 50 90 99.9 of e per transition")
    print(f"seen ({n} in the buffer; position {s[:, 0].min():.2f}..{s[:, 0].max():.2f}, "
          f"velocity {s[:, 1].min():.3f}..{s[:, 1].max():.3f}): {pct(seen)}")
    rng = np.random.default_rng(0)
    for name, ((x0, x1), (v0, v1)) in UNSEEN.items():
        u = np.stack([rng.uniform(x0, x1, 1000), rng.uniform(v0, v1, 1000)], axis=1).astype(np.float32)
        ua = rng.integers(0, 3, 1000)
        print(f"unseen, {name}: {pct(novelty(params, u, ua, mountain_car_step(u, ua), buf['delta_stats'], args.raw))}")


if __name__ == "__main__":
    main()
