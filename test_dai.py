"""Tests of dai.py. Run: python -m pytest -q test_dai.py"""

import json
import os
import subprocess
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one BLAS thread is faster (README, Speed)

import autograd.numpy as anp
import gymnasium as gym
import numpy as np
import pytest
from autograd import grad

import dai

HERE = os.path.dirname(os.path.abspath(__file__))


def small_config(**overrides):
    """A tiny, fast configuration for tests."""
    base = dict(total_steps=600, learning_starts=200, hidden_size=16, batch_size=16, eval_every=300,
                eval_episodes=2, log_every=300)
    return dai.Config(**{**base, **overrides})


def random_params(rng, sizes):
    """float64 parameters, so that finite differences are accurate."""
    theta = rng.normal(0.0, 0.5, dai.n_params(sizes))
    return dai.param_views(theta, sizes)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    obs_dim, n_actions, batch = 3, 4, 7
    sizes = dai.network_sizes(obs_dim, n_actions, dai.Config(hidden_size=5, pragmatic_head=False))  # one EFE head
    return {
        "rng": rng,
        "params": random_params(rng, sizes),
        "s": rng.normal(size=(batch, obs_dim)),
        "s_next": rng.normal(size=(batch, obs_dim)),
        "a_onehot": dai.one_hot(rng.integers(0, n_actions, batch), n_actions).astype(np.float64),
        "y": rng.normal(size=(batch, 1)),  # one head
        "g": rng.normal(size=(batch, n_actions)),
    }


# ---------------------------------------------------------------------------------------------
# Gradients: autograd (through the hand-written mlp backward) against finite differences
# ---------------------------------------------------------------------------------------------
def assert_gradient_matches_finite_differences(loss, layers, rng, h=1e-6):
    """Directional derivative along random directions: analytic vs central differences."""
    analytic = grad(loss)(layers)
    for _ in range(3):
        direction = [(rng.normal(size=W.shape), rng.normal(size=b.shape)) for W, b in layers]
        shifted = lambda sign: [(W + sign * h * dW, b + sign * h * db) for (W, b), (dW, db) in zip(layers, direction)]
        numeric = (loss(shifted(+1)) - loss(shifted(-1))) / (2 * h)
        exact = sum(np.sum(gW * dW) + np.sum(gb * db) for (gW, gb), (dW, db) in zip(analytic, direction))
        assert exact == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_transition_loss_gradient(problem):
    p = problem
    loss = lambda layers: dai.transition_loss(layers, p["s"], p["a_onehot"], p["s_next"] - p["s"])
    assert_gradient_matches_finite_differences(loss, p["params"]["transition"], p["rng"])


def test_efe_loss_gradient(problem):
    p = problem
    loss = lambda layers: dai.efe_loss(layers, p["s"], p["a_onehot"], p["y"], np.ones(1))
    assert_gradient_matches_finite_differences(loss, p["params"]["efe"], p["rng"])


def test_efe_loss_gradient_with_an_epistemic_head(problem):
    p = problem
    sizes = dai.network_sizes(3, 4, dai.Config(hidden_size=5, epistemic_head=True, pragmatic_head=False))
    layers = random_params(p["rng"], sizes)["efe"]
    y = p["rng"].normal(size=(len(p["s"]), 2))  # (batch, heads): G_prag and G_epi targets
    loss = lambda layers: dai.efe_loss(layers, p["s"], p["a_onehot"], y, np.ones(2))
    assert_gradient_matches_finite_differences(loss, layers, p["rng"])


def test_a_stopped_head_gets_no_gradient_and_leaves_the_first_heads_loss(problem):
    """heads_learning() stops G once the pragmatic head leads: L_G is then the first head's loss
    alone, and G's output weights get an exactly zero gradient."""
    p = problem
    cfg = dai.Config(hidden_size=5, pragmatic_head=True)
    heads = dai.efe_head_names(cfg)
    layers = random_params(p["rng"], dai.network_sizes(3, 4, cfg))["efe"]
    y = p["rng"].normal(size=(len(p["s"]), 2))  # (batch, heads): G_prag and G targets
    assert dai.heads_learning(heads, reward_found=False) == (1.0, 1.0)
    learning = np.array(dai.heads_learning(heads, reward_found=True))
    loss, grads = dai.efe_loss_and_grad(layers, p["s"], p["a_onehot"], y, learning)
    g_prag = dai.efe_heads(layers, p["s"], 4)[:, 0]  # (batch, n_actions)
    alone = np.mean((np.sum(g_prag * p["a_onehot"], axis=1) - y[:, 0]) ** 2)
    assert loss == pytest.approx(alone, rel=1e-6)
    W_out_grad, b_out_grad = grads[-1]
    assert np.all(W_out_grad[:, 4:] == 0) and np.all(b_out_grad[4:] == 0)
    assert np.any(W_out_grad[:, :4] != 0)


def test_policy_loss_gradient(problem):
    p = problem
    loss = lambda layers: dai.policy_loss(layers, p["s"], p["g"], 3.0)
    assert_gradient_matches_finite_differences(loss, p["params"]["policy"], p["rng"])


def test_mlp_backward_matches_autograd_tracing(problem):
    """The hand-written mlp_vjp against autograd differentiating a plain anp MLP."""
    def traced_mlp(layers, x):
        for W, b in layers[:-1]:
            x = anp.maximum(anp.dot(x, W) + b, 0.0)
        W, b = layers[-1]
        return anp.dot(x, W) + b

    layers, s, w = problem["params"]["efe"], problem["s"], problem["g"]
    by_hand = grad(lambda L: anp.sum(dai.mlp(L, s) * w))(layers)
    traced = grad(lambda L: anp.sum(traced_mlp(L, s) * w))(layers)
    for (hW, hb), (tW, tb) in zip(by_hand, traced):
        np.testing.assert_allclose(hW, tW, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hb, tb, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The EFE target and the epistemic term
# ---------------------------------------------------------------------------------------------
def test_efe_target_bootstraps_through_truncation_not_termination():
    r, eps, v_next = np.array([1.0, 1.0]), np.array([0.5, 0.5]), np.array([10.0, 10.0])
    y = dai.efe_targets(r, eps, np.array([1.0, 0.0]), v_next, gamma=0.9, epistemic_weight=2.0)
    assert y[0] == pytest.approx(-1.0 - 2.0 * 0.5)  # terminated: no future
    assert y[1] == pytest.approx(-1.0 - 2.0 * 0.5 + 0.9 * 10.0)  # not terminated (e.g. truncated)


def test_efe_target_vectorised_matches_loop():
    rng = np.random.default_rng(1)
    n, k, gamma, lam = 9, 3, 0.97, 0.7
    r, eps, term = rng.normal(size=n), rng.random(n), (rng.random(n) < 0.3).astype(float)
    g_next, logits_next = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    for kind in ("expectation", "min"):
        v_next = dai.bootstrap_value(g_next[:, None, :], logits_next, kind, (1.0,))  # one head
        y = dai.head_targets(r, eps, term, v_next, gamma, lam, ("G",))[:, 0]
        for i in range(n):
            q = [np.exp(logits_next[i, j]) / sum(np.exp(logits_next[i])) for j in range(k)]
            if kind == "expectation":
                v = sum(q[j] * g_next[i, j] for j in range(k))
            else:
                v = min(g_next[i])
            expected = -r[i] - lam * eps[i] + (gamma * v if term[i] == 0 else 0.0)
            assert y[i] == pytest.approx(expected)


@pytest.mark.parametrize("kind", ["expectation", "min"])
def test_two_heads_with_a_constant_weight_learn_the_one_head_target(kind):
    """The EFE is linear in its parts: y_prag + lambda y_epi is the one-head target bootstrapped
    on Gbar = Gbar_prag + lambda Gbar_epi, and each head's target follows its own loop."""
    rng = np.random.default_rng(2)
    n, k, gamma, lam = 9, 3, 0.97, 4.0
    r, e, term = rng.normal(size=n), rng.random(n), (rng.random(n) < 0.3).astype(float)
    g_next, logits_next = rng.normal(size=(n, 2, k)), rng.normal(size=(n, k))  # (batch, heads, actions)
    heads = ("G_prag", "G_epi")
    mix = dai.value_mix(heads, lam, reward_found=False)
    y = dai.head_targets(r, e, term, dai.bootstrap_value(g_next, logits_next, kind, mix), gamma, lam, heads)
    combined = dai.efe_value(g_next, mix)  # (batch, actions)
    y_one = dai.efe_targets(r, e, term, dai.bootstrap_value(combined[:, None, :], logits_next, kind, (1.0,))[:, 0], gamma, lam)
    np.testing.assert_allclose(y[:, 0] + lam * y[:, 1], y_one, rtol=1e-12)
    for i in range(n):
        a = int(np.argmin(combined[i]))
        q = np.exp(logits_next[i]) / np.sum(np.exp(logits_next[i]))
        v = [g_next[i, h, a] if kind == "min" else q @ g_next[i, h] for h in (0, 1)]
        future = 0.0 if term[i] else gamma
        assert y[i, 0] == pytest.approx(-r[i] + future * v[0])  # pragmatic: reward only
        assert y[i, 1] == pytest.approx(-e[i] + future * v[1])  # epistemic: the bonus only


def test_the_value_the_policy_follows_from_each_layout_of_heads():
    """One head: G itself. epistemic_head: G_prag + lambda_t G_epi, so G_prag alone at lambda = 0.
    pragmatic_head: the G head until the reward is found, then the G_prag head, whatever lambda."""
    g_heads = np.random.default_rng(3).normal(size=(5, 2, 3)).astype(np.float32)  # (batch, heads, actions)
    value = lambda heads, lam, found: dai.efe_value(g_heads[:, :len(heads)], dai.value_mix(heads, lam, found))
    assert np.array_equal(value(("G",), 2.0, True), g_heads[:, 0])
    assert np.array_equal(value(("G_prag", "G_epi"), 0.0, False), g_heads[:, 0])
    assert np.array_equal(value(("G_prag", "G_epi"), 2.0, True), g_heads[:, 0] + 2.0 * g_heads[:, 1])
    for lam in (0.0, 2.0):
        assert np.array_equal(value(("G_prag", "G"), lam, False), g_heads[:, 1])
        assert np.array_equal(value(("G_prag", "G"), lam, True), g_heads[:, 0])
    assert value(("G_prag", "G_epi"), 2.0, False).dtype == np.float32  # the weight does not promote G


@pytest.mark.parametrize("kind", ["expectation", "min"])
def test_the_pragmatic_head_learns_the_lambda_zero_target_beside_the_one_head_target(kind):
    """With pragmatic_head, head G's target is the one-head net's and head G_prag's is the
    lambda = 0 net's, both bootstrapped with the action the policy follows ("min")."""
    rng = np.random.default_rng(4)
    n, k, gamma, lam = 9, 3, 0.97, 4.0
    r, e, term = rng.normal(size=n), rng.random(n), (rng.random(n) < 0.3).astype(float)
    g_next, logits_next = rng.normal(size=(n, 2, k)), rng.normal(size=(n, k))  # (batch, heads, actions): G_prag, G
    heads = ("G_prag", "G")
    for found, followed in ((False, 1), (True, 0)):
        mix = dai.value_mix(heads, lam, found)
        y = dai.head_targets(r, e, term, dai.bootstrap_value(g_next, logits_next, kind, mix), gamma, lam, heads)
        for i in range(n):
            a = int(np.argmin(g_next[i, followed]))
            q = np.exp(logits_next[i]) / np.sum(np.exp(logits_next[i]))
            v = [g_next[i, h, a] if kind == "min" else q @ g_next[i, h] for h in (0, 1)]
            future = 0.0 if term[i] else gamma
            assert y[i, 0] == pytest.approx(-r[i] + future * v[0])  # G_prag: reward only
            assert y[i, 1] == pytest.approx(-r[i] - lam * e[i] + future * v[1])  # G: the one-head target


def test_epistemic_term_makes_surprising_actions_more_attractive():
    """The author's sign: prediction error lowers G, so softmax(-beta G) prefers the action."""
    y = dai.efe_targets(np.zeros(2), np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), 0.99, 1.0)
    assert y[1] < y[0]
    preference = dai.softmax(-2.0 * y[None])[0]  # treat the targets as G of two actions
    assert preference[1] > preference[0]
    assert np.all(dai.efe_targets(np.zeros(2), np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), 0.99, 0.0) == 0)


def test_prediction_error_is_half_squared_error_of_the_state_change():
    layers = [(np.zeros((3, 2)), np.array([0.5, -1.0]))]  # f(s, a) = (0.5, -1) for every input
    s, s_next = np.array([[1.0, 1.0]]), np.array([[2.0, 1.0]])
    eps = dai.prediction_error(layers, s, np.array([[1.0]]), dai.transition_target(s, s_next, None, "raw"))
    assert eps[0] == pytest.approx(0.5 * ((1.0 - 0.5) ** 2 + (0.0 + 1.0) ** 2))



def test_running_statistics_match_numpy_and_span_overwritten_transitions():
    """Welford's one-pass mean/std equal np.mean/np.std over every change ever added, including
    those the ring buffer has since overwritten."""
    rng = np.random.default_rng(3)
    s, s_next = rng.normal(size=(500, 3)) * [1.0, 1e-3, 50.0], rng.normal(size=(500, 3)) + 7.0
    buf = dai.buffer_init(64, 3)
    for i in range(500):
        dai.buffer_add(buf, s[i], 0, 0.0, s_next[i], False)
    stats = buf["delta_stats"]
    assert stats["count"] == 500
    np.testing.assert_allclose(stats["mean"], np.mean(s_next - s, axis=0), rtol=1e-10)
    np.testing.assert_allclose(dai.running_std(stats), np.std(s_next - s, axis=0), rtol=1e-10)
    z = dai.transition_target(s[:5], s_next[:5], stats, "standardised")
    np.testing.assert_allclose(z, (s_next[:5] - s[:5] - np.mean(s_next - s, 0)) / np.std(s_next - s, 0), rtol=1e-5)
    np.testing.assert_array_equal(dai.transition_target(s, s_next, stats, "raw"), s_next - s)


def test_standardised_epistemic_value_is_bounded_and_the_raw_one_is_not():
    eps = np.array([0.0, 0.3, 2.0, 1e9, np.inf])  # 2 state dimensions
    bonus = dai.epistemic_value(eps, 2, "standardised")
    np.testing.assert_allclose(bonus, [0.0, 0.15, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(dai.epistemic_value(eps, 2, "raw"), eps)


def test_epistemic_weight_fades_linearly_to_zero_and_stays_there():
    cfg = dai.Config(epistemic_weight=4.0, epistemic_decay_fraction=0.1, total_steps=10_000)  # T = 1000 steps
    weights = [dai.epistemic_weight_at(t, cfg) for t in (0, 250, 999, 1000, 5000)]
    assert weights[0] == 4.0 and weights[1] == pytest.approx(3.0) and 0 < weights[2] < 0.01
    assert weights[3:] == [0.0, 0.0]
    longer = dai.Config(epistemic_weight=4.0, epistemic_decay_fraction=0.1, total_steps=20_000)  # T = 2000
    assert dai.epistemic_weight_at(1000, longer) == pytest.approx(2.0)
    constant = dai.Config(epistemic_weight=4.0, epistemic_decay_fraction=0.0)  # the author's constant lambda
    assert {dai.epistemic_weight_at(t, constant) for t in (0, 10**6)} == {4.0}


def test_epistemic_weight_until_reward_is_the_schedule_until_the_reward_is_found_then_zero():
    cfg = dai.Config(epistemic_weight=4.0, epistemic_decay_fraction=0.1, total_steps=10_000,
                     epistemic_until_reward=True)  # T = 1000 steps
    assert [dai.epistemic_weight_at(t, cfg, reward_step=None) for t in (0, 250, 1000)] == [4.0, 3.0, 0.0]
    assert {dai.epistemic_weight_at(t, cfg, reward_step=100) for t in (100, 250, 10**6)} == {0.0}
    constant = dai.Config(epistemic_weight=4.0, epistemic_decay_fraction=0.0, epistemic_until_reward=True)
    assert (dai.epistemic_weight_at(10**6, constant), dai.epistemic_weight_at(0, constant, reward_step=0)) == (4.0, 0.0)
    without = dai.Config(epistemic_weight=4.0, epistemic_decay_fraction=0.1, total_steps=10_000,
                         epistemic_until_reward=False)
    assert dai.epistemic_weight_at(250, without, reward_step=100) == 3.0  # the flag off ignores it


CORRIDOR = '{"desc": ["SFFFFFFFFFFFFFFFFFFFFFFFFFFFFG"], "is_slippery": false, "max_episode_steps": 100}'


@pytest.mark.parametrize("env_id, env_kwargs, found", [("CartPole-v1", "", True), ("FrozenLake-v1", CORRIDOR, False)])
def test_until_reward_the_bonus_stops_when_an_episode_returns_differently_from_the_first(env_id, env_kwargs, found):
    """CartPole's episodes differ in length, so in return, and the bonus stops before the first
    update; on a 30-cell corridor a near-uniform policy never reaches the goal, every episode
    returns 0, and the bonus is paid throughout."""
    lines = []
    cfg = small_config(env_id=env_id, env_kwargs=env_kwargs, epistemic="standardised", epistemic_weight=5.0,
                       epistemic_decay_fraction=0.0, epistemic_until_reward=True, pragmatic_head=False)
    _, history = dai.train(cfg, progress=lines.append)
    returns, steps = history["episode_return"], history["episode_step"]
    differs = [step for step, ret in zip(steps, returns) if ret != returns[0]]
    notices = [line for line in lines if "the epistemic weight is 0 from now on" in line]
    if found:
        assert len(notices) == 1 and notices[0].startswith(f"step {differs[0]}:") and differs[0] < cfg.learning_starts
        assert set(history["epistemic_bonus"]) == {0.0}
    else:
        assert differs == [] and notices == [] and min(history["epistemic_bonus"]) > 0.0


def test_with_a_pragmatic_head_the_policy_follows_g_until_the_reward_is_found_then_g_prag():
    """The policy loss of one update, against policy_loss() on the head it should follow."""
    cfg = small_config(pragmatic_head=True, epistemic="standardised", epistemic_weight=5.0)
    sizes = dai.network_sizes(4, 2, cfg)
    rng = np.random.default_rng(5)
    buf = dai.buffer_init(100, 4)
    for _ in range(100):
        s = rng.normal(size=4).astype(np.float32)
        dai.buffer_add(buf, s, rng.integers(2), 1.0, s + rng.normal(0, 0.1, 4).astype(np.float32), 0.0)
    for reward_step, head in ((None, 1), (80, 0)):  # heads: G_prag, G
        state = dai.init_state(np.random.default_rng(0), sizes, cfg)
        state["reward_step"] = reward_step
        params, target = dai.param_views(state["theta"], sizes), dai.mlp_views(state["target_theta"], sizes["efe"])
        batch = dai.training_batch(buf, np.random.default_rng(1), cfg)
        g_heads = dai.efe_heads(params["efe"], batch["s"], 2)  # (batch, heads, actions)
        expected = [float(dai.policy_loss(params["policy"], batch["s"], g_heads[:, k], 1.0)) for k in (0, 1)]
        loss = dai.update(params, target, state, batch, cfg, 2, 5.0)["policy_loss"]
        assert loss == pytest.approx(expected[head], rel=1e-6) and loss != pytest.approx(expected[1 - head], rel=1e-3)


def test_where_the_reward_is_found_before_the_first_update_the_pragmatic_head_changes_nothing():
    """On CartPole the reward is found before the first update, so G stops before it learns;
    G_prag starts from the one-head net's weights and the second head from a child stream of
    the generator. The run is then lambda = 0's, number for number."""
    flags = dict(epistemic="standardised", epistemic_decay_fraction=0.0, epistemic_until_reward=True)
    _, alone = dai.train(small_config(epistemic_weight=0.0, pragmatic_head=False, **flags), progress=None)
    _, prag = dai.train(small_config(epistemic_weight=5.0, pragmatic_head=True, **flags), progress=None)
    timings = ("eval_train_seconds", "steps_per_second")
    assert len(prag["step"]) > 0 and {k: v for k, v in prag.items() if k not in timings} == \
        {k: v for k, v in alone.items() if k not in timings}


def test_a_transition_seen_many_times_earns_less_bonus_than_a_new_one():
    """Train the transition model on one region of a linear system; a transition from far
    outside it then earns more standardised bonus than the ones it has seen."""
    rng = np.random.default_rng(4)
    sizes = dai.network_sizes(2, 2, dai.Config(hidden_size=32))
    theta = dai.init_params(rng, sizes)[0][:dai.n_mlp_params(sizes["transition"])].copy()  # f only
    layers, adam = dai.mlp_views(theta, sizes["transition"]), dai.adam_init(theta)
    step = lambda s, a: s + np.where(a[:, None] == 1, 0.1, -0.1) * s[:, ::-1]  # a rotation either way
    buf = dai.buffer_init(4096, 2)
    seen_s, seen_a = rng.uniform(-1, 1, (4096, 2)).astype(np.float32), rng.integers(0, 2, 4096)
    for s, a in zip(seen_s, seen_a):
        dai.buffer_add(buf, s, a, 0.0, step(s[None], a[None])[0], False)
    for _ in range(300):
        i = rng.integers(0, 4096, 64)
        a_onehot = dai.one_hot(seen_a[i], 2)
        delta = dai.transition_target(seen_s[i], step(seen_s[i], seen_a[i]), buf["delta_stats"], "standardised")
        _, g = dai.transition_loss_and_grad(layers, seen_s[i], a_onehot, delta)
        dai.adam_step(theta, np.concatenate([x.ravel() for W_b in g for x in W_b]), adam, 3e-3)

    def bonus(s, a):
        delta = dai.transition_target(s, step(s, a), buf["delta_stats"], "standardised")
        return dai.epistemic_value(dai.prediction_error(layers, s, dai.one_hot(a, 2), delta), 2, "standardised")

    seen = bonus(seen_s[:256], seen_a[:256])
    new_s = rng.uniform(3, 4, (256, 2)).astype(np.float32) * rng.choice([-1, 1], (256, 2))  # far outside
    new = bonus(new_s, seen_a[:256])
    assert np.mean(seen) < 0.02 and np.mean(new) > 10 * np.mean(seen)

# ---------------------------------------------------------------------------------------------
# The policy loss
# ---------------------------------------------------------------------------------------------
def test_policy_loss_is_zero_at_the_target_and_positive_elsewhere():
    rng = np.random.default_rng(2)
    beta, g = 2.5, rng.normal(size=(1, 4))
    at_target = [(np.zeros((3, 4)), -beta * g[0])]  # logits = -beta G whatever the state
    s = rng.normal(size=(1, 3))
    assert dai.policy_loss(at_target, s, g, beta) == pytest.approx(0.0, abs=1e-12)
    for _ in range(20):
        off = [(np.zeros((3, 4)), -beta * g[0] + rng.normal(size=4))]
        assert dai.policy_loss(off, s, g, beta) > 1e-6


def test_log_softmax_is_stable():
    x = np.array([[1000.0, 0.0, -1000.0]])
    out = dai.log_softmax(x)
    assert np.all(np.isfinite(out)) and out[0, 0] == pytest.approx(0.0)
    assert dai.entropy(np.zeros((1, 4)))[0] == pytest.approx(np.log(4))


def test_precision_rises_when_the_policy_is_too_random():
    """gradient on log(1/beta) is positive when entropy exceeds the target: descent raises beta."""
    assert dai.precision_gradient(np.array([0.6]), 0.2) > 0
    assert dai.precision_gradient(np.array([0.1]), 0.2) < 0


# ---------------------------------------------------------------------------------------------
# Optimiser and replay buffer
# ---------------------------------------------------------------------------------------------
def test_adam_minimises_a_quadratic_and_keeps_its_state():
    x = np.array([3.0, -2.0])
    state = dai.adam_init(x)
    for _ in range(2000):
        dai.adam_step(x, 2 * x, state, lr=0.05)
    assert np.all(np.abs(x) < 1e-2) and state["t"] == 2000


def test_adam_first_step_has_size_lr():
    x = np.array([1.0, -1.0])
    dai.adam_step(x, np.array([10.0, -0.1]), dai.adam_init(x), lr=0.1)
    np.testing.assert_allclose(x, [0.9, -0.9], rtol=1e-5)


def test_buffer_wraps_around_and_samples_stored_transitions():
    buf = dai.buffer_init(3, 2)
    for i in range(5):
        dai.buffer_add(buf, np.full(2, i), i % 2, float(i), np.full(2, i + 1), i == 4)
    assert buf["size"] == 3 and buf["index"] == 2
    assert sorted(buf["r"]) == [2.0, 3.0, 4.0]  # 0 and 1 were overwritten
    batch = dai.buffer_sample(buf, np.random.default_rng(0), 200)
    assert set(batch["r"]) == {2.0, 3.0, 4.0}
    np.testing.assert_array_equal(batch["s_next"][:, 0], batch["r"] + 1)  # rows stay together
    np.testing.assert_array_equal(batch["terminated"], batch["r"] == 4.0)


# ---------------------------------------------------------------------------------------------
# Environments: spaces, encoding, the terminated/truncated split in the loop
# ---------------------------------------------------------------------------------------------
class Corridor(gym.Env):
    """Walk right along n cells (action 1); reaching the end terminates with reward 1."""

    def __init__(self, n=4):
        self.n, self.pos = n, 0
        self.observation_space = gym.spaces.Discrete(n)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self.pos, {}

    def step(self, action):
        assert isinstance(action, int)
        self.pos = min(self.pos + 1, self.n - 1) if action == 1 else max(self.pos - 1, 0)
        done = self.pos == self.n - 1
        return self.pos, float(done), done, False, {}


gym.register("TestCorridor-v0", entry_point=Corridor, max_episode_steps=6)


def test_truncation_is_not_stored_as_termination(monkeypatch):
    stored = []
    real_add = dai.buffer_add
    monkeypatch.setattr(dai, "buffer_add", lambda buf, *t: (stored.append(t), real_add(buf, *t)))
    _, history = dai.train(small_config(env_id="TestCorridor-v0", total_steps=300, learning_starts=50), progress=None)
    ends = [stored[end - 1] for end in history["episode_step"]]  # last transition of each episode
    at_goal = [t[3].argmax() == 3 for t in ends]
    assert any(at_goal) and not all(at_goal)  # some episodes terminated, some hit the time limit
    assert all(length == 6 for length, goal in zip(history["episode_length"], at_goal) if not goal)
    assert [bool(t[4]) for t in ends] == at_goal  # only termination is stored as terminal
    assert sum(bool(t[4]) for t in stored) == sum(at_goal)


def test_discrete_observations_are_one_hot():
    space = gym.spaces.Discrete(5, start=2)
    np.testing.assert_array_equal(dai.encode(4, space), [0, 0, 1, 0, 0])
    assert dai.encode(np.array([1.0, 2.0]), gym.spaces.Box(-1, 1, (2,))).dtype == np.float32


@pytest.mark.parametrize("env_id, words", [
    ("NoSuchEnv-v0", "cannot make environment"),
    ("Pendulum-v1", "supports Discrete action spaces only"),
    ("Blackjack-v1", "flat (1-D) Box or Discrete observation spaces only"),
])
def test_unsupported_environments_are_refused(env_id, words):
    with pytest.raises(dai.UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        dai.make_env(env_id)


# ---------------------------------------------------------------------------------------------
# Training: determinism and a learning check
# ---------------------------------------------------------------------------------------------
def test_same_seed_same_run_different_seed_different_run():
    runs = [dai.train(small_config(seed=seed), progress=None) for seed in (3, 3, 4)]
    (p1, h1), (p2, h2), (_, h3) = runs
    for key in ("episode_return", "eval_return", "efe_loss", "precision"):
        assert h1[key] == h2[key]
    for name in dai.NETWORKS:
        for (W1, b1), (W2, b2) in zip(p1[name], p2[name]):
            np.testing.assert_array_equal(W1, W2)
    assert h1["episode_return"] != h3["episode_return"]


def test_history_has_the_documented_series():
    _, h = dai.train(small_config(), progress=None)
    assert len(h["episode_return"]) == len(h["episode_length"]) == len(h["episode_step"]) > 0
    assert h["eval_step"] == [300, 600] and len(h["eval_return"]) == 2
    assert h["step"] == [300, 600] and all(np.isfinite(h["efe_loss"]))
    assert sum(h["episode_length"]) <= 600


def test_cartpole_learns_well_above_random():
    """A random policy scores ~22 on CartPole-v1; a broken agent stays near it."""
    cfg = dai.Config(total_steps=5000, learning_starts=500, eval_every=0, eval_episodes=10, seed=1)
    _, history = dai.train(cfg, progress=None)
    assert history["eval_return"][-1] > 100


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(HERE, "dai.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=HERE)


def test_cli_runs_the_readme_command_with_a_tiny_budget():
    out = run_cli("CartPole-v1", "--total-steps", "400", "--learning-starts", "100", "--eval-episodes", "2",
                  "--log-every", "200")
    assert out.returncode == 0, out.stderr
    assert "step 200 |" in out.stdout and "done: CartPole-v1 seed 0" in out.stdout


def test_cli_help_lists_every_config_field_with_its_default():
    out = run_cli("--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for field in dai.dataclasses.fields(dai.Config):
        if field.name != "env_id":
            assert "--" + field.name.replace("_", "-") in text
    assert "epistemic" in text and "(default: 0.99)" in text


@pytest.mark.parametrize("args, words", [
    (["NoSuchEnv-v0"], "cannot make environment"),
    (["Pendulum-v1"], "Discrete action spaces only"),
    (["CartPole-v1", "--gamma", "1.5"], "gamma must be in [0, 1)"),
    (["CartPole-v1", "--batch-size", "64", "--buffer-size", "10"], "buffer_size must be at least batch_size"),
    (["CartPole-v1", "--learning-rate", "0"], "learning rates must be > 0"),
    (["CartPole-v1", "--total-steps", "-5"], "total_steps must be at least 1"),
    (["CartPole-v1", "--bootstrap", "max"], "bootstrap must be"),
    (["CartPole-v1", "--epistemic-head"], "pragmatic_head is on by default: add --no-pragmatic-head"),
    (["CartPole-v1", "--no-such-flag"], "unrecognized arguments"),
])
def test_cli_bad_input_is_one_line_exit_2(args, words):
    out = run_cli(*args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("dai.py: error:") and words in last


# ---------------------------------------------------------------------------------------------
# Checkpoints, logs, interruption, non-finite values (issue 3)
# ---------------------------------------------------------------------------------------------
def test_checkpoint_round_trip_gives_identical_actions_and_identical_continued_training(tmp_path):
    """With the standardised epistemic value, so the running statistics, the fading weight's
    step count and the step the reward was found (for epistemic_until_reward) are part of what
    must survive the round trip."""
    path = str(tmp_path / "agent.npz")
    params, history = dai.train(small_config(save=path, epistemic="standardised", epistemic_weight=5.0,
                                             epistemic_decay_fraction=2.5, epistemic_head=True,
                                             pragmatic_head=False), progress=None)
    ckpt = dai.load_checkpoint(path)
    returns = history["episode_return"]
    reward_step = next(step for step, ret in zip(history["episode_step"], returns) if ret != returns[0])
    assert float(ckpt["first_return"]) == returns[0] and int(ckpt["reward_step"]) == reward_step
    assert int(ckpt["step"]) == 600 and int(ckpt["buffer_delta_count"]) == 600
    deltas = ckpt["buffer_s_next"][:600].astype(np.float64) - ckpt["buffer_s"][:600]
    np.testing.assert_allclose(ckpt["buffer_delta_mean"], deltas.mean(axis=0), rtol=1e-5, atol=1e-7)
    cfg = dai.make_config({"env_id": "CartPole-v1", "total_steps": 900}, ckpt)
    assert cfg.hidden_size == 16 and cfg.total_steps == 900 and cfg.epistemic == "standardised" and cfg.epistemic_head  # saved, then given
    restored, *_ = dai.restore(ckpt, cfg, dai.network_sizes(4, 2, cfg))
    assert (restored["first_return"], restored["reward_step"]) == (returns[0], reward_step)
    assert int(ckpt["n_actions"]) == 2 and ckpt["target_theta"].size == dai.n_mlp_params([4, 16, 16, 4])  # two heads
    loaded = dai.param_views(dai.checkpoint_theta(ckpt, cfg, dai.network_sizes(4, 2, cfg)), dai.network_sizes(4, 2, cfg))
    states = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    assert [dai.act(params["policy"], s) for s in states] == [dai.act(loaded["policy"], s) for s in states]
    runs = [dai.train(cfg, progress=None, checkpoint=dai.load_checkpoint(path)) for _ in range(2)]
    assert runs[0][1]["episode_return"] == runs[1][1]["episode_return"]
    assert runs[0][1]["eval_step"] == [900] and runs[0][1]["efe_loss"] == runs[1][1]["efe_loss"]


def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "good.npz")
    dai.train(small_config(total_steps=300, eval_every=0, save=path), progress=None)
    return path


@pytest.mark.parametrize("kind, words", [
    ("missing", "does not exist"),
    ("truncated", "is not a readable checkpoint"),
    ("text", "is not a readable checkpoint"),
    ("foreign npz", "is not a dai.py checkpoint"),
    ("other version", f"is checkpoint format version 99; this dai.py reads version {dai.CHECKPOINT_VERSION}"),
    ("incomplete", "is not a complete dai.py checkpoint (missing"),
    ("other env", "checkpoint was made for CartPole-v1 (observation size 4, 2 actions); Acrobot-v1 has"),
])
def test_bad_checkpoints_are_refused_with_their_reason(tmp_path, good_checkpoint, kind, words):
    path, env_id = str(tmp_path / "bad.npz"), "CartPole-v1"
    data = open(good_checkpoint, "rb").read()
    if kind == "truncated":
        open(path, "wb").write(data[: len(data) // 2])
    elif kind == "text":
        open(path, "w").write("not a checkpoint\n")
    elif kind == "foreign npz":
        write_npz(path, weights=np.zeros(3))
    elif kind == "other version":
        write_npz(path, format_version=np.array(99))
    elif kind == "incomplete":
        write_npz(path, format_version=np.array(dai.CHECKPOINT_VERSION), theta=np.zeros(3))
    elif kind == "other env":
        path, env_id = good_checkpoint, "Acrobot-v1"
    out = run_cli(env_id, "--load", path, "--eval-only", "--episodes", "1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dai.py: error:") and words in lines[0]


def test_a_checkpoint_with_inconsistent_arrays_is_refused(tmp_path, good_checkpoint):
    ckpt = dict(np.load(good_checkpoint))
    ckpt["adam_theta_v"] = ckpt["adam_theta_v"][:-1]
    path = str(tmp_path / "odd.npz")
    write_npz(path, **ckpt)
    out = run_cli("CartPole-v1", "--load", path, "--total-steps", "400")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "dai.py: error: checkpoint is inconsistent: adam_theta_v do not fit its networks and buffer"


@pytest.mark.parametrize("flags, words", [
    (["--hidden-size", "8"], "but hidden_size 8, hidden_layers 2 and the EFE heads G_prag, G"),
    (["--no-pragmatic-head"], "checkpoint's EFE heads are G_prag, G, but epistemic_head and pragmatic_head make G;"),
    (["--epistemic-head", "--no-pragmatic-head"], "make G_prag, G_epi;"),  # as many parameters, other meanings
])
def test_loading_with_other_network_shapes_says_which_flag(good_checkpoint, flags, words):
    out = run_cli("CartPole-v1", "--load", good_checkpoint, "--eval-only", *flags)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert words in out.stderr.strip().splitlines()[-1]


def test_a_checkpoint_from_before_the_head_flags_resumes_with_them_off(tmp_path):
    """A checkpoint whose config lacks the fields added after its format (ADDED_FIELDS) was
    trained without them: resuming it must not switch on today's defaults."""
    path, old = str(tmp_path / "one_head.npz"), str(tmp_path / "old.npz")
    dai.train(small_config(total_steps=300, eval_every=0, save=path, epistemic="raw", epistemic_weight=1.0,
                           epistemic_decay_fraction=0.0, epistemic_until_reward=False, pragmatic_head=False), progress=None)
    ckpt = dict(np.load(path))
    config = {k: v for k, v in json.loads(str(ckpt["config"])).items() if k not in dai.ADDED_FIELDS}
    write_npz(old, **{**ckpt, "config": np.array(json.dumps(config))})
    cfg = dai.make_config({"env_id": "CartPole-v1"}, dai.load_checkpoint(old))
    assert (cfg.epistemic_until_reward, cfg.epistemic_head, cfg.pragmatic_head) == (False, False, False)
    assert dai.make_config({"env_id": "CartPole-v1"}).pragmatic_head  # without a checkpoint: the defaults
    out = run_cli("CartPole-v1", "--load", old, "--eval-only", "--episodes", "1")
    assert out.returncode == 0, out.stderr


def test_eval_only_prints_mean_and_std(good_checkpoint):
    out = run_cli("CartPole-v1", "--load", good_checkpoint, "--eval-only", "--episodes", "3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("eval_return mean ") and "over 3 episodes" in out.stdout


def test_a_crash_during_a_save_leaves_the_old_checkpoint_loadable(tmp_path, good_checkpoint, monkeypatch):
    path = str(tmp_path / "agent.npz")
    open(path, "wb").write(open(good_checkpoint, "rb").read())
    before = open(path, "rb").read()

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(dai.np, "savez", crash)
    ckpt = dai.load_checkpoint(path)
    sizes = dai.network_sizes(4, 2, small_config())
    state, buf, rng, step = dai.restore(ckpt, small_config(), sizes)
    with pytest.raises(KeyboardInterrupt):
        dai.save_checkpoint(path, small_config(), step + 1, sizes, state, buf, rng)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["agent.npz"]  # no temporary file left behind
    assert int(dai.load_checkpoint(path)["step"]) == step


def test_save_refuses_to_overwrite_an_existing_file(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("my notes")
    out = run_cli("CartPole-v1", "--save", str(precious), "--total-steps", "10")
    assert out.returncode == 2 and "already exists" in out.stderr
    assert precious.read_text() == "my notes"


def test_ctrl_c_leaves_a_loadable_checkpoint_and_a_complete_log(tmp_path):
    import csv
    import signal
    import time

    ckpt, log = tmp_path / "agent.npz", tmp_path / "log.csv"
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "dai.py"), "CartPole-v1", "--total-steps", "100000",
                             "--learning-starts", "200", "--hidden-size", "16", "--save", str(ckpt), "--log", str(log),
                             "--eval-every", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE,
                            # a shell's background job inherits SIGINT ignored; Ctrl-C must reach the child
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or log.read_text().count("\n") < 11):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted at step" in err and str(ckpt) in err
    step = int(dai.load_checkpoint(str(ckpt))["step"])
    rows = list(csv.DictReader(open(log)))
    assert len(rows) >= 10 and all(None not in row and row["kind"] == "episode" for row in rows)
    assert 0 < int(rows[-1]["step"]) <= step


class NanAfter(gym.Env):
    """CartPole-like observations; the reward becomes NaN after 400 steps."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.uniform(-1, 1, 2).astype(np.float32), {}

    def step(self, action):
        self.t += 1
        obs = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return obs, float("nan") if self.t > 400 else 1.0, False, self.t % 50 == 0, {}


gym.register("TestNanAfter-v0", entry_point=NanAfter)


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    path = str(tmp_path / "agent.npz")
    cfg = small_config(env_id="TestNanAfter-v0", total_steps=2000, learning_starts=100, eval_every=0,
                       save=path, save_every=300)
    with pytest.raises(dai.StopTraining) as stop:
        dai.train(cfg, progress=None)
    assert stop.value.exit_code == 1
    assert "efe_loss became nan at step" in str(stop.value) and "keeps the last good checkpoint" in str(stop.value)
    ckpt = dai.load_checkpoint(path)
    assert int(ckpt["step"]) == 300 and np.all(np.isfinite(ckpt["theta"]))


def test_discrete_observation_env_learns_frozenlake():
    cfg = dai.Config(env_id="FrozenLake-v1", env_kwargs='{"is_slippery": false}', total_steps=5000,
                     learning_starts=500, hidden_size=32, eval_every=0, eval_episodes=1, seed=0)
    _, history = dai.train(cfg, progress=None)
    assert history["eval_return"][-1] == 1.0  # the greedy policy walks to the goal
    assert np.mean(history["episode_return"][-20:]) >= 0.4  # and the sampling one mostly does (random: ~0.015)


@pytest.mark.parametrize("args, words", [
    (["FrozenLake-v1", "--env-kwargs", "{is_slippery: false}"], "env_kwargs is not valid JSON"),
    (["FrozenLake-v1", "--env-kwargs", "[1, 2]"], "env_kwargs must be a JSON object"),
    (["FrozenLake-v1", "--env-kwargs", '{"slippery": false}'], "cannot make environment 'FrozenLake-v1' with env_kwargs"),
    (["FrozenLake-v1", "--env-kwargs", '{"map_name": "9x9"}'], "with env_kwargs {\"map_name\": \"9x9\"}: KeyError"),
    (["CartPole-v1", "--eval-only"], "--eval-only needs a checkpoint"),
    (["CartPole-v1", "--log", "/no/such/folder/log.csv"], "the folder does not exist"),
    (["CartPole-v1", "--tau", "0"], "tau must be in (0, 1]"),
    (["CartPole-v1", "--epistemic", "scaled"], "epistemic must be 'standardised' or 'raw'"),
    (["CartPole-v1", "--epistemic-decay-fraction", "-0.1"], "epistemic_decay_fraction must be >= 0"),
    (["CartPole-v1", "--target-entropy", "1.5"], "target_entropy must be in (0, 1)"),
    (["CartPole-v1", "--total-steps", "ten"], "invalid int value"),
])
def test_cli_more_bad_input_is_one_line_exit_2(args, words):
    out = run_cli(*args)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("dai.py: error:") and words in out.stderr


def test_log_with_other_columns_is_refused_and_left_as_it_was(tmp_path):
    log = tmp_path / "old.csv"
    log.write_text("kind,step,episode_return\nepisode,10,9.0\n")
    with pytest.raises(dai.UsageError, match="columns are not this dai.py's"):
        dai.open_log(str(log))
    assert log.read_text() == "kind,step,episode_return\nepisode,10,9.0\n"
    ours = tmp_path / "ours.csv"
    dai.open_log(str(ours)).close()
    dai.open_log(str(ours)).close()  # this dai.py's own log is appended to
    assert ours.read_text().count("kind,step") == 1


def test_render_without_a_display_says_so(good_checkpoint):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "dai.py", "CartPole-v1", "--load", good_checkpoint, "--eval-only",
                          "--render"], capture_output=True, text=True, cwd=HERE, env=env, timeout=120)
    assert out.returncode == 2 and out.stderr.strip() == "dai.py: error: --render needs a display, and none was found (DISPLAY is not set)"


def test_readme_documents_every_flag_and_the_test_command():
    readme = open(os.path.join(HERE, "README.md")).read()
    for field in dai.dataclasses.fields(dai.Config)[1:]:
        assert "`--" + field.name.replace("_", "-") in readme, field.name
    command = "python -m pytest -q test_dai.py benchmarks/test_benchmarks.py"
    assert command in readme and command in open(os.path.join(HERE, ".ci", "run")).read()


def test_resuming_a_finished_run_asks_for_more_steps(good_checkpoint):
    ckpt = dai.load_checkpoint(good_checkpoint)
    cfg = dai.make_config({"env_id": "CartPole-v1"}, ckpt)  # total_steps 300, as saved
    with pytest.raises(dai.UsageError, match="the checkpoint is at step 300; pass --total-steps above it"):
        dai.train(cfg, progress=None, checkpoint=ckpt)


@pytest.mark.parametrize("env_id", ["Taxi-v4", "CliffWalking-v1", "FrozenLake8x8-v1", "Acrobot-v1"])
def test_other_environments_run(env_id):
    """Discrete (one-hot) and Box observations; CliffWalking has no time limit of its own."""
    cfg = small_config(env_id=env_id, total_steps=120, learning_starts=40, batch_size=8, hidden_size=8,
                       eval_every=0, eval_episodes=1)
    _, history = dai.train(cfg, progress=None)
    assert len(history["eval_return"]) == 1 and np.isfinite(history["eval_return"][0])
    assert dai.make_env(env_id).spec.max_episode_steps is not None


def test_render_that_cannot_open_a_window_says_why(good_checkpoint):
    """A DISPLAY that leads nowhere (or no pygame): one line, exit 2, no traceback."""
    env = {**os.environ, "DISPLAY": ":97", "SDL_VIDEODRIVER": "x11"}
    out = subprocess.run([sys.executable, "dai.py", "CartPole-v1", "--load", good_checkpoint, "--eval-only",
                          "--render", "--episodes", "1"], capture_output=True, text=True, cwd=HERE, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("dai.py: error: --render failed:")


def test_main_returns_exit_codes_without_raising(capsys):
    assert dai.main(["NoSuchEnv-v0"]) == 2
    assert capsys.readouterr().err.startswith("dai.py: error: cannot make environment 'NoSuchEnv-v0'")
    assert dai.main(["CartPole-v1", "--no-such-flag"]) == 2
    assert dai.main(["--help"]) == 0
    assert dai.main(["CartPole-v1", "--total-steps", "150", "--learning-starts", "100", "--eval-episodes", "1",
                     "--hidden-size", "8"]) == 0
    assert "done: CartPole-v1" in capsys.readouterr().out


def test_closing_the_output_pipe_stops_quietly():
    """`python dai.py CartPole-v1 | head -1`: no traceback when the reader goes away."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "dai.py"), "CartPole-v1", "--log-every", "50",
                             "--hidden-size", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    assert proc.stdout.readline().startswith("step ")  # a progress line, or the note that the reward is found
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err
