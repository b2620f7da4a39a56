"""What the agent believes, over MountainCar's whole state space, at four moments of training.

    python benchmarks/beliefs.py                        # seed 8, 40k steps, about a minute on one core
    python benchmarks/beliefs.py --seed 0 --steps 60000 --out /tmp/beliefs.png

Trains dai.py's default agent on MountainCar-v0, saving a checkpoint at every evaluation, and draws
a row of panels over a grid of (position, velocity) at four of them: the first evaluation, the last
before a training episode first reached the goal, the first after, and the end. The panels:

    visits     where the agent has been: the states in its replay buffer (log count)
    e          the information gain dai.information_gain, the mean over actions
    min_a G    what q follows prefers: G_r + lambda (G_e - e), lower is preferred
    q          the action the policy's mode takes, shaded by q's entropy (dark: certain)

Every grid comes from dai.py's own functions on a restored checkpoint (belief_grids); the grids
are saved beside the figure (.npz), and a test checks them against dai.py state by state.
"""

import argparse
import os
import shutil
import sys
import tempfile

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import dai  # noqa: E402
from novelty import restore  # noqa: E402
from solve import parse_overrides  # noqa: E402

POSITION, VELOCITY = (-1.2, 0.6), (-0.07, 0.07)  # MountainCar-v0's observation bounds
ACTIONS = ("left", "none", "right")


def grid_states(n):
    """An n x n grid of (position, velocity), position along the columns.  (n * n, 2)"""
    x, v = np.meshgrid(np.linspace(*POSITION, n), np.linspace(*VELOCITY, n))
    return np.stack([x.ravel(), v.ravel()], axis=1).astype(np.float32)


def belief_grids(path, n=41):
    """The agent of checkpoint `path` over grid_states(n); each grid (n, n), velocity along the rows."""
    cfg, params, prior, state, buf, step = restore(path)
    s = grid_states(n)
    e = dai.information_gain(params["transition"], prior, s, len(ACTIONS))  # (n * n, actions)
    g_r, g_e = np.moveaxis(dai.pair_efe(params, s, len(ACTIONS)), 1, 0)  # each (n * n, actions)
    g = g_r + cfg.epistemic_weight * (g_e - e)
    logq = dai.log_softmax(dai.mlp(params["policy"], s))  # (n * n, actions)
    visited = buf["s"][: buf["size"]]
    edges = [np.linspace(*POSITION, n + 1), np.linspace(*VELOCITY, n + 1)]
    visits = np.histogram2d(visited[:, 0], visited[:, 1], bins=edges)[0].T  # rows: velocity
    return {"step": step, "lambda": cfg.epistemic_weight, "beta": dai.precision_of(state), "visits": visits,
            "e": e.mean(axis=1).reshape(n, n), "min_g": g.min(axis=1).reshape(n, n),
            "mode": logq.argmax(axis=1).reshape(n, n), "entropy": -np.sum(np.exp(logq) * logq, axis=1).reshape(n, n)}


def train_keeping_checkpoints(cfg, folder):
    """dai.train with cfg.save set, copying the checkpoint after each evaluation to folder/step_N.npz.
    train reports an evaluation before it saves it, so each report copies the previous one."""
    def keep(line):
        if os.path.exists(cfg.save):
            with np.load(cfg.save) as saved:
                step = int(saved["step"])
            shutil.copy(cfg.save, os.path.join(folder, f"step_{step}.npz"))
    _, history = dai.train(cfg, progress=keep)
    keep(None)
    return history


def moments(history, goal=-200.0):
    """Four evaluation steps: the first, the last before the first episode that reached the goal,
    the first after it, and the last; evenly spaced ones when no episode reached the goal."""
    steps = history["eval_step"]
    first_goal = next((s for s, r in zip(history["episode_step"], history["episode_return"]) if r > goal), None)
    if first_goal is None or first_goal < steps[0] or first_goal > steps[-1]:
        return [steps[round(i * (len(steps) - 1) / 3)] for i in range(4)], first_goal
    before = max(s for s in steps if s < first_goal)
    after = min(s for s in steps if s >= first_goal)
    return [steps[0], before, after, steps[-1]], first_goal


def draw(grids, history, path, title):
    eval_return = dict(zip(history["eval_step"], history["eval_return"]))
    fig, axes = plt.subplots(len(grids), 4, figsize=(16, 3.3 * len(grids)), dpi=90, squeeze=False)
    extent = [*POSITION, *VELOCITY]
    show = lambda ax, image, **kw: ax.imshow(image, origin="lower", extent=extent, aspect="auto", **kw)
    for row, g in zip(axes, grids):
        row[0].set_ylabel(f"step {g['step']:,}: λ {g['lambda']:.3g}, β {g['beta']:.3g}\n"
                          f"eval return {eval_return.get(g['step'], float('nan')):.1f}\n\nvelocity")
        panels = [(show(row[0], np.log1p(g["visits"]), cmap="Greys"), "where it has been: log(1 + visits)"),
                  (show(row[1], g["e"], cmap="magma", vmin=0), "what it would learn: e, mean over actions"),
                  (show(row[2], g["min_g"], cmap="viridis_r"), "what it prefers: min_a G_r + λ(G_e − e) (yellow: low)")]
        for image, name in panels:
            fig.colorbar(image, ax=image.axes)
            image.axes.set_title(name, fontsize=9)
        certainty = 1 - g["entropy"] / np.log(len(ACTIONS))  # 0: uniform, 1: one action
        colours = plt.get_cmap("coolwarm")(g["mode"] / (len(ACTIONS) - 1))  # blue left, grey none, red right
        colours[..., 3] = 0.15 + 0.85 * certainty
        show(row[3], colours)
        row[3].set_title("what it does: q's mode, left / none / right;\nblue / grey / red, faint where q is unsure", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("position (goal at 0.5)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40_000, help="env steps to train for")
    parser.add_argument("--grid", type=int, default=41, help="grid points per axis")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "MountainCar-v0_beliefs.png"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="Config overrides")
    parser.add_argument("--checkpoints", default=None, help="keep the checkpoints in this folder (default: deleted)")
    args = parser.parse_args()
    overrides = parse_overrides(args.set)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.checkpoints or scratch
        cfg = dai.Config(env_id="MountainCar-v0", seed=args.seed, total_steps=args.steps,
                         save=os.path.join(folder, "agent.npz"), **overrides)
        try:
            history = train_keeping_checkpoints(cfg, folder)
        except dai.UsageError as e:  # e.g. a --checkpoints folder that holds an earlier run's agent.npz
            raise SystemExit(f"beliefs.py: error: {e}") from None
        chosen, first_goal = moments(history)
        grids = [belief_grids(os.path.join(folder, f"step_{step}.npz"), args.grid) for step in chosen]
    goal_text = f"first reached the goal at step {first_goal}" if first_goal else "never reached the goal"
    draw(grids, history, args.out, f"dai.py on MountainCar-v0, seed {args.seed}: {goal_text}")
    np.savez(os.path.splitext(args.out)[0] + ".npz", states=grid_states(args.grid), first_goal=first_goal or -1,
             **{f"{key}_{i}": np.asarray(g[key]) for i, g in enumerate(grids) for key in g})
    print(f"moments {chosen}; {goal_text}; figure {args.out}")


if __name__ == "__main__":
    main()
