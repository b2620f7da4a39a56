"""How much would the agent learn from what it has seen, and from what it has not?

    python benchmarks/novelty.py                      # MountainCar-v0, 8,000 steps, seed 0
    python benchmarks/novelty.py --steps 20000

Trains dai.py with lambda = 0 (so exploration is by the policy's entropy alone; the transition heads
learn all the same), then prints the information gain e(s, a) (dai.information_gain) of the states
in the replay buffer, every action, and of states from two MountainCar regions the agent has not
reached: the far left wall at speed, and the slope up to the goal at speed.
"""

import argparse
import os
import sys
import tempfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import dai  # noqa: E402

UNSEEN = {"left wall, moving left": ((-1.2, -0.9), (-0.06, -0.02)),
          "goal slope, moving right": ((-0.2, 0.5), (0.02, 0.06))}


def restore(path):
    """(cfg, params, prior, state, buffer, step) of a checkpoint, through dai.read_checkpoint and dai.restore."""
    ckpt, config = dai.read_checkpoint(path)
    cfg = dai.Config(**config)
    with dai.make_env(cfg.env_id, cfg.env_kwargs) as env:
        sizes = dai.sizes_of(env, cfg)
    state, buf, step = dai.restore(ckpt, cfg, sizes)
    return cfg, dai.param_views(state["theta"], sizes), dai.prior_of(state, sizes), state, buf, step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "agent.npz")
        dai.train(dai.Config(env_id="MountainCar-v0", total_steps=args.steps, seed=args.seed, epistemic_weight=0.0,
                             eval_every=0, save=path), progress=None)
        _, params, prior, _, buf, _ = restore(path)
    s = buf["s"][: buf["size"]]
    gain = lambda x: dai.information_gain(params["transition"], prior, x, 3).ravel()
    pct = lambda e: " ".join(f"{x:.2g}" for x in np.percentile(e, [10, 50, 90, 99.9]))
    print(f"# MountainCar-v0, {args.steps} steps with lambda = 0, seed {args.seed}")
    print(f"# percentiles 10 50 90 99.9 of e(s, a) over states and actions")
    print(f"seen ({len(s)} in the buffer; position {s[:, 0].min():.2f}..{s[:, 0].max():.2f}, "
          f"velocity {s[:, 1].min():.3f}..{s[:, 1].max():.3f}): {pct(gain(s))}")
    rng = np.random.default_rng(0)
    for name, ((x0, x1), (v0, v1)) in UNSEEN.items():
        u = np.stack([rng.uniform(x0, x1, 1000), rng.uniform(v0, v1, 1000)], axis=1).astype(np.float32)
        print(f"unseen, {name}: {pct(gain(u))}")


if __name__ == "__main__":
    main()
