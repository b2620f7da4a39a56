"""Learning curves: run dai.train for each configuration and seed, keep every history as CSV,
draw the evaluation return over env steps (mean line, min-max band, solve threshold).

    python benchmarks/curves.py CartPole-v1 --seeds 0 1 --steps 20000 --out /tmp/curves
    python benchmarks/curves.py MountainCar-v0 --seeds 0 1 2 3 4 --steps 100000 --goal -200 --out /tmp/curves \
        --configs default "reward_alone:epistemic_weight=0" "heads_3:ensemble_size=3"

A configuration is LABEL or LABEL:key=value,key=value (Config fields); `--set key=value ...`
applies to all of them. Histories go to --out (benchmarks/results/ unless given) as
ENV_LABEL_seedN_{episodes,eval}.csv, and the figure as ENV_NAME.png. `--reuse` reads the
histories there instead of training again. Seeds run in parallel processes, one core each.
"""

import argparse
import csv
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core per run, before NumPy loads

from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import gymnasium as gym  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import dai  # noqa: E402
from solve import fmt, median, parse_overrides, run, solve_summary  # noqa: E402

# history keys that share a length, one CSV each
TABLES = {"episodes": dai.HISTORY[:3], "eval": dai.HISTORY[3:]}


def parse_config(text):
    """"LABEL" or "LABEL:key=value,key=value" -> (label, overrides)."""
    label, _, pairs = text.partition(":")
    return label, parse_overrides([p for p in pairs.split(",") if p])


def file_stem(env_id):
    """The env id as the start of a file name: "tasks:CostlyCorridor-v0" -> "CostlyCorridor-v0"."""
    return env_id.split(":")[-1]


def history_path(out, env_id, label, seed, table):
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    return os.path.join(out, f"{file_stem(env_id)}_{safe}_seed{seed}_{table}.csv")


def write_history(history, out, env_id, label, seed):
    for table, keys in TABLES.items():
        with open(history_path(out, env_id, label, seed, table), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(keys)
            writer.writerows(zip(*(history[k] for k in keys)))


def read_history(out, env_id, label, seed):
    """A stored history. Runs stored before dai.py logged at each evaluation kept their update
    metrics in a third table, *_progress.csv, with its own "step" column (see metric_steps)."""
    history = {}
    for table in ("episodes", "eval", "progress"):
        path = history_path(out, env_id, label, seed, table)
        if table == "progress" and not os.path.exists(path):
            break
        with open(path) as f:
            rows = list(csv.DictReader(f))
        for k in rows[0] if rows else TABLES.get(table, ()):
            history[k] = [float(row[k] or "nan") for row in rows]
    for key in dai.HISTORY[6:]:  # a column added after the run was stored
        history.setdefault(key, [float("nan")] * len(metric_steps(history)))
    return history


def metric_steps(history):
    """The env steps at which the update metrics were taken: each evaluation's, or for runs stored
    before that, the "step" column of their progress table."""
    return history.get("step", history["eval_step"])


def goal_steps(history, goal):
    """Env steps at which the training episodes that reached the goal (return > goal) ended."""
    return [s for s, r in zip(history["episode_step"], history["episode_return"]) if r > goal]


def band(ax, steps, values, label):
    """Mean line and min-max band over seeds; values: (seeds, points)."""
    line, = ax.plot(steps, values.mean(axis=0), label=label)
    ax.fill_between(steps, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)


def plot(runs, env_id, threshold, path, goal=None, ymin=None):
    """runs: {label: [history per seed]}. The evaluation return; with `goal`, also the number of
    training episodes that reached the goal, and the epistemic bonus per step beside the mean
    |reward| per step of the training episodes."""
    panels = 3 if goal is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.4 * (1 + 0.7 * (panels - 1)), 3.8), dpi=100, squeeze=False)
    ax = axes[0, 0]
    for label, hs in runs.items():
        band(ax, hs[0]["eval_step"], np.array([h["eval_return"] for h in hs]), f"{label} ({len(hs)} seed{'s' * (len(hs) > 1)})")
    ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"solved ({threshold:g})")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation return (mean of episodes)")
    if ymin is not None:
        top = max(threshold, *(max(h["eval_return"]) for hs in runs.values() for h in hs))
        ax.set_ylim(ymin, top + 0.05 * (top - ymin))
    ax.set_title(f"dai.py on {env_id}: mean and min-max over seeds", fontsize=10)
    ax.legend(loc="best", fontsize=8)
    if goal is not None:
        ax = axes[0, 1]
        for label, hs in runs.items():
            grid = np.array(hs[0]["eval_step"])
            reached = np.array([np.searchsorted(goal_steps(h, goal), grid, side="right") for h in hs])
            band(ax, grid, reached, label)
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"training episodes that reached the goal")
        ax.set_title(f"goal = episode return > {goal:g}", fontsize=10)
        ax.legend(loc="best", fontsize=8)
        ax = axes[0, 2]
        for label, hs in runs.items():
            band(ax, metric_steps(hs[0]), np.array([h["epistemic_bonus"] for h in hs]), label)
        first = next(iter(runs.values()))
        reward = [np.sum(np.abs(h["episode_return"])) / max(np.sum(h["episode_length"]), 1) for h in first]
        ax.axhline(np.mean(reward), color="grey", linestyle=":", linewidth=1,
                   label=f"mean |reward| per step ({next(iter(runs))})")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("env steps")
        ax.set_ylabel("epistemic bonus per step (λ e)")
        ax.set_title("the bonus beside the reward", fontsize=10)
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env_id")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=None, help="total_steps (default: Config's)")
    parser.add_argument("--configs", nargs="+", default=["default"], help="LABEL or LABEL:key=value,...")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every config")
    parser.add_argument("--name", default="curves", help="figure name: results/ENV_NAME.png")
    parser.add_argument("--threshold", type=float, default=None, help="default: the env's reward_threshold")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reuse", action="store_true", help="read the histories in --out instead of training")
    parser.add_argument("--goal", type=float, default=None,
                        help="a training episode with a return above this reached the goal: adds the goal and bonus panels")
    parser.add_argument("--ymin", type=float, default=None,
                        help="lower end of the return axis, so that one diverging seed does not flatten the rest")
    args = parser.parse_args(argv)

    threshold = args.threshold if args.threshold is not None else gym.spec(args.env_id).reward_threshold
    common = parse_overrides(args.set)
    if args.steps:
        common["total_steps"] = args.steps
    configs = [parse_config(text) for text in args.configs]
    os.makedirs(args.out, exist_ok=True)

    jobs = [(label, dai.Config(env_id=args.env_id, seed=seed, **{**common, **overrides}))
            for label, overrides in configs for seed in args.seeds]
    histories = {}
    if args.reuse:
        for label, cfg in jobs:
            histories[label, cfg.seed] = read_history(args.out, args.env_id, label, cfg.seed)
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            for (label, cfg), (seed, history) in zip(jobs, pool.map(run, [cfg for _, cfg in jobs])):
                write_history(history, args.out, args.env_id, label, seed)
                histories[label, seed] = history

    by_label = {}
    print(f"# {args.env_id}, threshold {threshold:g}, seeds {args.seeds}, common overrides {common or 'none'}")
    for label, overrides in configs:
        runs = by_label[label] = [histories[label, seed] for seed in args.seeds]
        rows = [solve_summary(h, threshold) for h in runs]
        solved = [r["solved_at"] for r in rows if r["solved_at"] is not None]
        finals = np.array([r["final"] for r in rows])
        stay = [r["stay_solved"] for r in rows if r["stay_solved"] is not None]
        print(f"{label} {overrides or ''}: solved {len(solved)}/{len(rows)} | "
              f"solved_at median {fmt(median(solved), '.0f')} "
              f"[{fmt(min(solved, default=None), '.0f')}-{fmt(max(solved, default=None), '.0f')}] | "
              f"stay_solved median {fmt(median(stay), '.0%')} | "
              f"final {finals.mean():.1f} ± {finals.std():.1f} | "
              f"train_seconds median {np.median([h['eval_train_seconds'][-1] for h in runs]):.0f} | "
              f"steps_per_second median {np.median([r['steps_per_second'] for r in rows]):.0f}")
        if args.goal is not None:
            firsts = [(goal_steps(h, args.goal) or [None])[0] for h in runs]
            found = [f for f in firsts if f is not None]
            print(f"{label}: first goal episode at {' '.join('-' if f is None else str(int(f)) for f in firsts)} | "
                  f"found on {len(found)}/{len(runs)} | median {fmt(median(found), '.0f')} | "
                  f"goal episodes {' '.join(str(len(goal_steps(h, args.goal))) for h in runs)}")
    path = os.path.join(args.out, f"{file_stem(args.env_id)}_{args.name}.png")
    plot(by_label, args.env_id, threshold, path, args.goal, args.ymin)
    print(f"figure: {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
