"""End-to-end runs of the benchmark scripts at a tiny budget. The figures need matplotlib and
LunarLander-v3 needs Box2D: `pip install -r benchmarks/requirements.txt`; without them those tests
are skipped and say so."""

import csv
import importlib.util
import os
import subprocess
import sys

import pytest
from autograd import value_and_grad

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = ["--set", "learning_starts=100", "hidden_size=16", "eval_every=150", "eval_episodes=2"]
needs = lambda module: pytest.mark.skipif(importlib.util.find_spec(module) is None,
                                          reason=f"needs {module}: pip install -r benchmarks/requirements.txt")


def run(script, *args):
    out = subprocess.run([sys.executable, os.path.join(HERE, script), *args], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


@needs("matplotlib")
def test_curves_writes_histories_and_a_png(tmp_path):
    stdout = run("curves.py", "CartPole-v1", "--seeds", "0", "1", "--steps", "300", "--jobs", "2", "--out",
                 str(tmp_path), "--name", "tiny", "--configs", "default", "no-epistemic:epistemic_weight=0", "--goal", "15",
                 *TINY)
    png = tmp_path / "CartPole-v1_tiny.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    for label in ("default", "no-epistemic"):
        for seed in (0, 1):
            evals = list(csv.DictReader(open(tmp_path / f"CartPole-v1_{label}_seed{seed}_eval.csv")))
            assert [int(float(r["eval_step"])) for r in evals] == [150, 300]
            episodes = list(csv.DictReader(open(tmp_path / f"CartPole-v1_{label}_seed{seed}_episodes.csv")))
            assert len(episodes) > 3 and sum(float(r["episode_length"]) for r in episodes) <= 300
        assert f"{label} " in stdout and "solved 0/2" in stdout
        assert f"{label}: first goal episode at " in stdout  # episodes with a return above 15
    again = run("curves.py", "CartPole-v1", "--seeds", "0", "1", "--steps", "300", "--out", str(tmp_path), "--name",
                "tiny", "--configs", "default", "no-epistemic:epistemic_weight=0", "--goal", "15", "--reuse", *TINY)
    assert again == stdout  # the same figures from the stored histories


def test_solve_prints_a_row_per_seed_and_a_summary():
    stdout = run("solve.py", "CartPole-v1", "--seeds", "3", "--steps", "300", "--jobs", "1", *TINY)
    lines = stdout.strip().splitlines()
    assert lines[1].startswith("seed 3: solved_at - |") and "steps_per_second" in lines[1]
    assert lines[-1].startswith("summary: solved 0/1")


@needs("matplotlib")
@needs("Box2D")
def test_every_benchmarked_task_can_be_made(tmp_path):
    """benchmarks/requirements.txt is enough for every environment the README reports, Box2D's
    LunarLander-v3 included (gymnasium's box2d module needs both Box2D and pygame)."""
    stdout = run("curves.py", "LunarLander-v3", "--seeds", "0", "--steps", "150", "--jobs", "1", "--out",
                 str(tmp_path), "--name", "tiny", *TINY)
    assert "solved 0/1" in stdout


@needs("matplotlib")
def test_p_worse_counts_pairs_as_a_loop_does():
    from compare import p_worse
    form, reference = [3.0, 1.0, 2.0, float("inf")], [2.0, 2.0, 0.5]
    pairs = [1.0 if x > y else 0.5 if x == y else 0.0 for x in form for y in reference]
    assert p_worse(form, reference) == sum(pairs) / len(pairs)


@needs("matplotlib")
def test_permutation_p_is_small_only_for_a_real_gap():
    from math import comb
    from compare import permutation_p
    low, high = [1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]
    exact = 1 / comb(10, 5)  # only one labelling of 10 values puts the 5 largest in the form
    assert permutation_p(high, low, draws=20_000) < 10 * exact
    assert permutation_p(low, high) > 0.99  # the form is better, not worse
    same = [1.0, 4.0, 5.0, 8.0, 9.0], [2.0, 3.0, 6.0, 7.0, 10.0]
    assert 0.3 < permutation_p(*same) < 0.7


@needs("matplotlib")
def test_compare_reads_stored_histories(tmp_path):
    run("curves.py", "CartPole-v1", "--seeds", "0", "1", "--steps", "300", "--jobs", "2", "--out", str(tmp_path),
        "--configs", "a:epistemic_weight=0", "b", *TINY)
    stdout = run("compare.py", "CartPole-v1", "--seeds", "0", "1", "--out", str(tmp_path), "--reference", "a",
                 "--labels", "b", "--threshold", "20", "--goal", "15")
    lines = stdout.splitlines()
    for measure in ("steps to solve", "final eval", "first goal"):  # defined for every seed
        i = next(i for i, line in enumerate(lines) if line.startswith(f"{measure}: a "))
        assert lines[i + 1].startswith("    b ") and "P(worse)" in lines[i + 1] and "p better" in lines[i + 1]
    i = next(i for i, line in enumerate(lines) if line.startswith("share still solved: a "))
    assert lines[i + 1].startswith("    b ")  # a test, or why there is none
    missing = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), "CartPole-v1", "--out", str(tmp_path),
                              "--reference", "a", "--labels", "c"], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no stored history" in missing.stderr and "Traceback" not in missing.stderr


def test_the_costly_corridor_pays_one_at_the_far_end_and_charges_each_step_right():
    import gymnasium as gym
    import tasks  # noqa: F401  registers CostlyCorridor-v0
    env = gym.make("CostlyCorridor-v0")
    env.reset(seed=0)
    steps = [env.step(2) for _ in range(29)]  # right, to the last of the 30 cells
    assert [s[2] for s in steps] == [False] * 28 + [True]
    assert sum(s[1] for s in steps) == pytest.approx(1 - 29 * 0.01 / 30)
    env.reset()
    assert [env.step(a)[1] for a in (0, 1, 3)] == [0.0, 0.0, 0.0]  # left (at the wall) and the no-ops are free
    assert env.spec.max_episode_steps == 100


def test_deep_sea_pays_one_only_at_the_end_of_the_path_of_n_moves_right():
    import gymnasium as gym
    import numpy as np
    import tasks  # noqa: F401  registers DeepSea-v0
    env = gym.make("DeepSea-v0", size=6, map_seed=3)
    game = env.unwrapped
    assert len(np.unique(game.right_action)) == 2  # "right" is not the same action everywhere
    for policy, treasure in (("right", True), ("left once", False), ("left", False)):
        obs, total = env.reset(seed=0)[0], 0.0
        for t in range(6):
            right = policy == "right" or (policy == "left once" and t != 2)
            action = game.right_action[game.row, game.column] if right else 1 - game.right_action[game.row, game.column]
            obs, r, terminated, truncated, _ = env.step(int(action))
            total += r
            assert terminated == (t == 5) and not truncated
        moves_right = {"right": 6, "left once": 5, "left": 0}[policy]
        assert total == pytest.approx(float(treasure) - moves_right * 0.01 / 6)
    assert obs == 5 * 6 + 0  # the bottom row's first cell after six moves left


def test_the_noisy_corridor_shows_noise_only_on_the_tv_and_walks_like_the_corridor():
    import gymnasium as gym
    import numpy as np
    import tasks  # noqa: F401  registers NoisyCorridor-v0
    env = gym.make("NoisyCorridor-v0")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (31,) and obs[0] == 1 and obs[-1] == 0
    screens = [env.step(4)[0] for _ in range(50)]
    assert all(s[0] == 1 for s in screens) and np.std([s[-1] for s in screens]) > 0.5  # in place, noise
    obs, reward, *_ = env.step(2)
    assert obs[1] == 1 and obs[-1] == 0 and reward == pytest.approx(-0.01 / 30)


@needs("matplotlib")
def test_deep_sea_reads_the_first_treasure_of_each_stored_run(tmp_path):
    sys.path.insert(0, HERE)
    from curves import write_history
    for form, first in (("loggain", 60.0), ("reward_alone", None)):
        for n in (3, 4):
            episodes = [(20.0 * k, 1.0 if first is not None and 20 * k >= first else -0.01) for k in range(1, 10)]
            history = {"episode_step": [e[0] for e in episodes], "episode_return": [e[1] for e in episodes],
                       "episode_length": [n] * 9, "eval_step": [90, 180], "eval_return": [0.0, episodes[-1][1]],
                       **{key: [0.0, 0.0] for key in ("eval_train_seconds", "transition_loss", "efe_loss", "policy_loss",
                                                       "entropy", "epistemic_bonus", "precision")}}
            write_history(history, str(tmp_path), "tasks:DeepSea-v0", f"n{n}_{form}", 0)
    stdout = run("deep_sea.py", "--sizes", "3", "4", "--seeds", "0", "--out", str(tmp_path))
    assert "N 3, loggain: first treasure 60 | found on 1/1 | last evaluation >= 0.9 on 1/1 | budget 180" in stdout
    assert "N 4, reward_alone: first treasure - | found on 0/1 | last evaluation >= 0.9 on 0/1" in stdout
    assert (tmp_path / "DeepSea-v0_first_treasure.png").stat().st_size > 5_000


@needs("matplotlib")
def test_beliefs_draws_what_the_agents_own_functions_give_state_by_state(tmp_path):
    """The saved grids of beliefs.py against dai.py called on single states of the grid."""
    import numpy as np
    sys.path.insert(0, os.path.join(HERE, ".."))
    import dai
    stdout = run("beliefs.py", "--steps", "1500", "--grid", "7", "--out", str(tmp_path / "b.png"), "--checkpoints",
                 str(tmp_path), "--set", "learning_starts=100", "hidden_size=16", "eval_every=500", "eval_episodes=2")
    assert (tmp_path / "b.png").stat().st_size > 10_000 and "moments [500, 1000, 1000, 1500]" in stdout
    grids = np.load(tmp_path / "b.npz")
    for i in (0, 3):
        ckpt, config = dai.read_checkpoint(str(tmp_path / f"step_{int(grids[f'step_{i}'])}.npz"))
        cfg = dai.Config(**config)
        sizes = dai.network_sizes(2, 3, 16, 2, cfg.ensemble_size)
        state, buf, step = dai.restore(ckpt, cfg, sizes)
        params = dai.param_views(state["theta"], sizes)
        prior = dai.prior_of(state, sizes)
        assert grids[f"lambda_{i}"] == cfg.epistemic_weight == 10.0
        for j, s in enumerate(grids["states"]):
            assert grids[f"mode_{i}"].flat[j] == dai.act(params["policy"], s)
            e = [dai.information_gain(params["transition"], prior, s[None], 3)[0, a] for a in range(3)]
            g_r, g_e = dai.pair_efe(params, s[None], 3)[0]
            g = [g_r[a] + cfg.epistemic_weight * (g_e[a] - e[a]) for a in range(3)]
            assert grids[f"min_g_{i}"].flat[j] == pytest.approx(min(g), rel=1e-5)
            assert grids[f"e_{i}"].flat[j] == pytest.approx(np.mean(e), rel=1e-5)
        visited = buf["s"][: buf["size"]]
        assert grids[f"visits_{i}"].sum() == len(visited) == step


@pytest.mark.parametrize("overrides", [{}, {"raw_epistemic": True}, {"epistemic_weight": 0.0}])
def test_the_handwritten_floor_computes_dai_updates_gradient(overrides):
    """update_cost.py's floor is only a floor if it computes what dai.update does: its gradient against
    autograd's of dai's losses, with the information gain, with the paper's term and with reward alone."""
    import numpy as np
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, ".."))
    import dai
    from update_cost import handwritten_gradient
    cfg, rng = dai.Config(**{"epistemic_weight": 3.0, "ensemble_size": 3, **overrides}), np.random.default_rng(3)
    sizes = dai.network_sizes(4, 2, 32, 2, cfg.ensemble_size)
    state = dai.init_state(rng, sizes, 2.0, cfg.ensemble_size)
    params = dai.param_views(state["theta"], sizes)
    prior = dai.prior_of(state, sizes)
    state["target_theta"] += rng.normal(0, 0.01, state["target_theta"].shape).astype(np.float32)
    target = dai.param_views(state["target_theta"], {n: sizes[n] for n in dai.EFE_NETS})
    buf = dai.buffer_init(256, 4, rng, cfg.ensemble_size)
    for _ in range(256):
        s = rng.normal(size=4).astype(np.float32)
        dai.buffer_add(buf, s, rng.integers(2), rng.normal(), s + rng.normal(0, 0.1, 4), rng.random() < 0.1)
    batch, lam = dai.buffer_sample(buf, rng, 64), cfg.epistemic_weight
    s, s_next, a_onehot = batch["s"], batch["s_next"], dai.one_hot(batch["a"], 2)
    d = dai.transition_target(s, s_next, buf["delta_stats"], prior["projection"], cfg.raw_epistemic)
    e, e_next = np.split(dai.information_gain(params["transition"], prior, np.concatenate([s, s_next]), 2), 2)
    r = batch["r"]
    if cfg.raw_epistemic:  # the observed prediction error paid as reward
        r = r + lam * dai.prediction_error(params["transition"], prior, s, a_onehot, d).mean(axis=1)
    if cfg.raw_epistemic or lam == 0:  # no information gain: G_e learns 0
        e, e_next = 0 * e, 0 * e_next
    logits_next = dai.mlp(params["policy"], s_next)
    v_next = dai.bootstrap_value(dai.pair_efe(target, s_next, 2), logits_next)
    y = dai.efe_targets(r, dai.bootstrap_value(e_next, logits_next), batch["terminated"], v_next, cfg.gamma,
                        dai.EPISTEMIC_GAMMA)
    g = dai.pair_efe(params, s, 2)[:, 0] + lam * (dai.pair_efe(params, s, 2)[:, 1] - e)
    grads = {"transition": value_and_grad(dai.transition_loss)(params["transition"], prior, s, a_onehot, d, batch["mask"])[1],
             "policy": value_and_grad(dai.policy_loss)(params["policy"], s, g, 2.0)[1],
             **{net: value_and_grad(dai.efe_loss)(params[net], s, a_onehot, y)[1] for net in dai.EFE_NETS}}
    autograd = np.concatenate([x.ravel() for net in params for W_b in grads[net] for x in W_b])
    written = handwritten_gradient(params, prior, target, state, batch, buf["delta_stats"], cfg)
    assert written.shape == autograd.shape == state["theta"].shape
    np.testing.assert_allclose(written, autograd, rtol=1e-4, atol=1e-6)


def test_results_sh_runs_the_papers_agent_with_the_flags_dai_names():
    sys.path.insert(0, os.path.join(HERE, ".."))
    import dai
    text = open(os.path.join(HERE, "results.sh")).read()
    pairs = ",".join(line.split('"')[1].replace("$PAPER,", "") for line in text.splitlines()
                     if line.startswith("PAPER="))
    flags = dai.PAPER_AGENT.split()
    expected = {}
    for i, flag in enumerate(flags):
        if flag.startswith("--"):
            value = flags[i + 1] if i + 1 < len(flags) and not flags[i + 1].startswith("--") else "true"
            expected[flag[2:].replace("-", "_")] = value
    assert dict(pair.split("=") for pair in pairs.split(",")) == expected
