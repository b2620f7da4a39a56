"""Tests of dai.py. Run: python -m pytest -q"""

import csv
import json
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrices: one BLAS thread is faster

import autograd.numpy as anp
import gymnasium as gym
import numpy as np
import pytest
from autograd import grad, value_and_grad

import dai

HERE = os.path.dirname(os.path.abspath(__file__))
CORRIDOR = (
    '{"desc": ["SFFFFFFFFFFFFFFFFFFFFFFFFFFFFG"], "is_slippery": false, "max_episode_steps": 100}'
)


def small_config(**overrides):
    """A tiny, fast configuration for tests."""
    base = dict(total_steps=600, learning_starts=200, hidden_size=16, batch_size=16, eval_every=300,
                eval_episodes=2)
    return dai.Config(**{**base, **overrides})


def random_params(rng, sizes):
    """float64 parameters, so that finite differences are accurate."""
    theta = rng.normal(0.0, 0.5, dai.init_params(np.random.default_rng(), sizes)[0].size)
    return dai.param_views(theta, sizes)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    obs_dim, n_actions, batch, k = 3, 4, 7, 3
    sizes = dai.network_sizes(obs_dim, n_actions, 12, 2, k)
    return {
        "rng": rng,
        "sizes": sizes,
        "params": random_params(rng, sizes),
        "prior": {
            "layers": random_params(rng, {"p": dai.prior_sizes(sizes["transition"])})["p"],
            "projection": np.eye(obs_dim),
        },
        "s": rng.normal(size=(batch, obs_dim)),
        "s_next": rng.normal(size=(batch, obs_dim)),
        "a_onehot": dai.one_hot(rng.integers(0, n_actions, batch), n_actions).astype(np.float64),
        "mask": (rng.random((batch, k)) < 0.5).astype(float),
        "y": rng.normal(size=(batch, 2)),
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
        shifted = lambda sign: [
            (W + sign * h * dW, b + sign * h * db) for (W, b), (dW, db) in zip(layers, direction)
        ]
        numeric = (loss(shifted(+1)) - loss(shifted(-1))) / (2 * h)
        exact = sum(
            np.sum(gW * dW) + np.sum(gb * db) for (gW, gb), (dW, db) in zip(analytic, direction)
        )
        assert exact == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_transition_loss_gradient_reaches_the_heads_but_not_the_prior(problem):
    p = problem
    d = p["s_next"] - p["s"]
    loss = lambda layers: dai.transition_loss(
        layers, p["prior"], p["s"], p["a_onehot"], d, p["mask"]
    )
    assert_gradient_matches_finite_differences(loss, p["params"]["transition"], p["rng"])
    (W_out, b_out), k = grad(loss)(p["params"]["transition"])[-1], p["mask"].shape[1]
    heads_seen = p["mask"].sum(axis=0) > 0  # a head with no transition in its half gets no gradient
    assert [np.any(b_out.reshape(k, -1)[j] != 0) for j in range(k)] == list(heads_seen)


def test_efe_loss_gradient(problem):
    p = problem
    loss = lambda layers: dai.efe_loss(layers, p["s"], p["a_onehot"], p["y"])
    assert_gradient_matches_finite_differences(loss, p["params"]["efe"], p["rng"])


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

    layers, s = problem["params"]["efe"], problem["s"]
    w = problem["rng"].normal(size=(len(s), 8))
    by_hand = grad(lambda L: anp.sum(dai.mlp(L, s) * w))(layers)
    traced = grad(lambda L: anp.sum(traced_mlp(L, s) * w))(layers)
    for (hW, hb), (tW, tb) in zip(by_hand, traced):
        np.testing.assert_allclose(hW, tW, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(hb, tb, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The EFE target and the epistemic term
# ---------------------------------------------------------------------------------------------
def test_efe_target_bootstraps_through_truncation_not_termination():
    v_next = np.array([[10.0, 4.0], [10.0, 4.0]])
    y = dai.efe_targets(
        np.array([1.0, 1.0]), np.array([0.5, 0.5]), np.array([1.0, 0.0]), v_next, 0.9, 0.5
    )
    np.testing.assert_allclose(
        y[0], [-1.0, 0.0]
    )  # terminated: no future, no future information gain
    np.testing.assert_allclose(
        y[1], [-1.0 + 0.9 * 10.0, 0.5 * (4.0 - 0.5)]
    )  # not terminated (e.g. truncated)


def test_efe_targets_vectorised_match_a_plain_loop():
    """y_r = -r + gamma (1 - terminated) sum_a' q(a'|s') Gbar_r(s', a'),
    y_e = gamma_e (1 - terminated) sum_a' q(a'|s') (Gbar_e(s', a') - e(s', a'))."""
    rng = np.random.default_rng(1)
    n, k, gamma, gamma_e = 9, 3, 0.97, 0.8
    r, term = rng.normal(size=n), (rng.random(n) < 0.3).astype(float)
    g_next, e_next, logits_next = (
        rng.normal(size=(n, 2, k)),
        rng.random((n, k)),
        rng.normal(size=(n, k)),
    )
    y = dai.efe_targets(
        r,
        dai.bootstrap_value(e_next, logits_next),
        term,
        dai.bootstrap_value(g_next, logits_next),
        gamma,
        gamma_e,
    )
    for i in range(n):
        q = [np.exp(logits_next[i, j]) / sum(np.exp(logits_next[i])) for j in range(k)]
        v_r = sum(q[j] * g_next[i, 0, j] for j in range(k))
        v_e = sum(q[j] * (g_next[i, 1, j] - e_next[i, j]) for j in range(k))
        assert y[i, 0] == pytest.approx(-r[i] + (0.0 if term[i] else gamma * v_r))
        assert y[i, 1] == pytest.approx(0.0 if term[i] else gamma_e * v_e)


def test_the_prior_is_scaled_so_that_the_heads_start_as_unsure_as_a_model_that_predicts_the_mean(
    problem,
):
    p = problem
    p["prior"]["layers"][-1][1][...] = 0.0  # as init_params draws it
    dai.scale_prior(p["prior"], p["s"], p["a_onehot"])
    untrained = [
        (0 * W, 0 * b) for W, b in p["params"]["transition"]
    ]  # the heads' spread is the prior's alone
    f = dai.ensemble_predictions(untrained, p["prior"], p["s"], p["a_onehot"])  # (batch, K, d)
    assert np.mean(0.5 * np.sum(np.var(f, axis=1), axis=1)) == pytest.approx(0.5, rel=1e-6)
    e = dai.information_gain(untrained, p["prior"], p["s"], 4)  # (batch, n_actions)
    assert 0.25 < np.mean(e[p["a_onehot"] == 1]) < 0.5  # log(1 + v) < v


def test_prediction_error_is_half_squared_error_of_each_head():
    layers = [
        (np.zeros((3, 4)), np.array([0.5, -1.0, 0.0, 0.0]))
    ]  # two heads: f_1 = (0.5, -1), f_2 = 0
    prior = {
        "layers": [(np.zeros((3, 4)), np.array([0.0, 0.0, 1.0, 0.0]))],
        "projection": np.eye(2),
    }  # p_2 = (1, 0)
    s, s_next = np.array([[1.0, 1.0]]), np.array([[2.0, 1.0]])
    d = dai.transition_target(s, s_next, None, prior["projection"], raw=True)
    eps = dai.prediction_error(layers, prior, s, np.array([[1.0]]), d)
    np.testing.assert_allclose(eps[0], [0.5 * ((1.0 - 0.5) ** 2 + (0.0 + 1.0) ** 2), 0.0])


def test_running_statistics_match_numpy_and_span_overwritten_transitions():
    """Welford's one-pass mean and variance equal NumPy's over every change ever added, those the
    ring buffer has since overwritten included; the target is scaled so that its mean squared norm
    is 1."""
    rng = np.random.default_rng(3)
    s, s_next = rng.normal(size=(500, 3)) * [1.0, 1e-3, 50.0], rng.normal(size=(500, 3)) + 7.0
    buf = dai.buffer_init(64, 3, rng, 2)
    for i in range(500):
        dai.buffer_add(buf, s[i], 0, 0.0, s_next[i], False)
    stats, delta = buf["delta_stats"], s_next - s
    assert stats["count"] == 500
    np.testing.assert_allclose(stats["mean"], np.mean(delta, axis=0), rtol=1e-10)
    d = dai.transition_target(s, s_next, stats, np.eye(3), raw=False)
    np.testing.assert_allclose(
        d, (delta - np.mean(delta, 0)) / np.sqrt(np.sum(np.var(delta, 0))), rtol=1e-5
    )
    assert np.mean(np.sum(d**2, axis=1)) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(
        dai.transition_target(s, s_next, stats, np.eye(3), raw=True), delta
    )


def test_long_observations_are_projected_to_a_quarter_of_the_hidden_width_keeping_lengths():
    sizes = dai.network_sizes(400, 2, 128, 2, 5)
    state = dai.init_state(np.random.default_rng(0), sizes, 1.0, 5)
    R = state["projection"]
    assert R.shape == (400, 32) and sizes["transition"][-1] == 5 * 32
    changes = np.eye(400)[:200] - np.eye(400)[200:]  # one-hot cell changes, |.|^2 = 2
    assert np.mean(np.sum((changes @ R) ** 2, axis=1)) == pytest.approx(2.0, rel=0.1)
    short = dai.init_state(np.random.default_rng(0), dai.network_sizes(4, 2, 128, 2, 5), 1.0, 5)[
        "projection"
    ]
    np.testing.assert_array_equal(short, np.eye(4))
    assert dai.prior_sizes(sizes["transition"]) == [402, 32, 32, 160]


def test_information_gain_matches_a_plain_loop_over_states_actions_and_heads(problem):
    p = problem
    n_actions, k, obs_dim = 4, 3, 3
    e = dai.information_gain(p["params"]["transition"], p["prior"], p["s"], n_actions)
    for i in range(len(p["s"])):
        for a in range(n_actions):
            x = np.concatenate([p["s"][i], np.eye(n_actions)[a]])[None]
            f = (dai.mlp(p["params"]["transition"], x) + dai.mlp(p["prior"]["layers"], x))[
                0
            ].reshape(k, obs_dim)
            mean = sum(f[j] for j in range(k)) / k
            var = [sum((f[j][d] - mean[d]) ** 2 for j in range(k)) / k for d in range(obs_dim)]
            assert e[i, a] == pytest.approx(0.5 * sum(np.log(1 + v) for v in var), rel=1e-9)


def test_the_information_gain_makes_uncertain_actions_more_attractive():
    """The author's sign: the epistemic value lowers G, so softmax(-beta (G - lambda e)) prefers
    the action."""
    g, e = np.zeros((1, 2)), np.array([[0.0, 1.0]])
    preference = np.exp(dai.log_softmax(-2.0 * (g - 1.0 * e)))[0]
    assert preference[1] > preference[0]


def fit_ensemble(rng, s, a, s_next, n_actions, updates, k=5, hidden=32):
    """Heads, their prior and the delta statistics after `updates` Adam steps of L_T."""
    sizes = dai.network_sizes(s.shape[1], n_actions, hidden, 2, k)
    prior = dai.prior_of(dai.init_state(rng, sizes, 1.0, k), sizes)
    dai.scale_prior(prior, s, dai.one_hot(a, n_actions))
    sizes = {"transition": sizes["transition"]}
    theta, params = dai.init_params(rng, sizes)
    adam, buf = dai.adam_init(theta), dai.buffer_init(len(s), s.shape[1], rng, k)
    for row in zip(s, a, np.zeros(len(s)), s_next, np.zeros(len(s))):
        dai.buffer_add(buf, *row)
    for _ in range(updates):
        b = dai.buffer_sample(buf, rng, 64)
        d = dai.transition_target(
            b["s"], b["s_next"], buf["delta_stats"], prior["projection"], raw=False
        )
        _, g = value_and_grad(dai.transition_loss)(
            params["transition"], prior, b["s"], dai.one_hot(b["a"], n_actions), d, b["mask"]
        )
        dai.adam_step(theta, np.concatenate([x.ravel() for W_b in g for x in W_b]), adam, 3e-3)
    return params["transition"], prior, buf["delta_stats"]


def test_a_region_seen_many_times_earns_less_information_gain_than_a_new_one():
    """Fit the heads on one region of a linear system; states far outside it earn far more."""
    rng = np.random.default_rng(4)
    step = (
        lambda s, a: s + np.where(a[:, None] == 1, 0.1, -0.1) * s[:, ::-1]
    )  # a rotation either way
    s, a = rng.uniform(-1, 1, (4096, 2)).astype(np.float32), rng.integers(0, 2, 4096)
    layers, prior, _ = fit_ensemble(rng, s, a, step(s, a).astype(np.float32), 2, 600)
    seen = dai.information_gain(layers, prior, s[:256], 2)
    far = rng.uniform(3, 4, (256, 2)).astype(np.float32) * rng.choice([-1, 1], (256, 2))
    assert np.mean(dai.information_gain(layers, prior, far, 2)) > 10 * np.mean(seen)


def test_a_noisy_tv_earns_less_and_less_information_gain_while_its_prediction_error_stays():
    """Action 1 shows pure noise in the last entry, action 0 steps deterministically. The more
    often the TV is watched, the less the heads disagree about it (they all learn that its mean is
    0), while each head's prediction error does not fall: from few samples the heads partly memorise
    the noise, from many they predict its mean, left with the noise's own 1/2 E|d - E d|^2."""
    rng = np.random.default_rng(6)
    gains, errors = [], []
    for watched in (32, 256, 2048):
        s = np.zeros((2 * watched, 3), np.float32)
        s[:, :2] = rng.uniform(-1, 1, (2 * watched, 2))
        a = np.repeat([0, 1], watched)
        s_next = s.copy()
        s_next[a == 0, :2] += 0.3
        s_next[a == 1, 2] = rng.normal(size=watched)
        layers, prior, stats = fit_ensemble(rng, s, a, s_next, 2, 1500)
        gains.append(np.mean(dai.information_gain(layers, prior, s[a == 1], 2)[:, 1]))
        d = dai.transition_target(s[a == 1], s_next[a == 1], stats, prior["projection"], raw=False)
        errors.append(
            np.mean(dai.prediction_error(layers, prior, s[a == 1], dai.one_hot(a[a == 1], 2), d))
        )
    assert gains[0] > 2 * gains[1] > 4 * gains[2]
    assert errors[2] >= errors[0] and errors[2] > 0.5 and errors[2] > 50 * gains[2]


def update_problem(seed=4, obs_dim=3, n_actions=2, **overrides):
    cfg, rng = small_config(**overrides), np.random.default_rng(seed)
    sizes = dai.network_sizes(obs_dim, n_actions, 16, 2, cfg.ensemble_size, cfg.efe_nets)
    state = dai.init_state(np.random.default_rng(0), sizes, 1.0, cfg.ensemble_size)
    buf = dai.buffer_init(50, obs_dim, rng, cfg.ensemble_size)
    for _ in range(50):
        s = rng.normal(size=obs_dim).astype(np.float32)
        dai.buffer_add(
            buf,
            s,
            rng.integers(n_actions),
            rng.normal(),
            s + rng.normal(0, 0.1, obs_dim).astype(np.float32),
            0.0,
        )
    params = dai.param_views(state["theta"], sizes)
    target = dai.param_views(
        state["target_theta"], {n: sizes[n] for n in dai.EFE_NETS if n in sizes}
    )
    prior, batch = dai.prior_of(state, sizes), dai.buffer_sample(buf, rng, cfg.batch_size)
    dai.scale_prior(prior, batch["s"], dai.one_hot(batch["a"], n_actions))
    return cfg, params, prior, target, state, batch, buf["delta_stats"]


def test_one_update_against_a_plain_loop_the_pessimistic_pair_and_the_information_gain():
    """y_r bootstraps on max(Gbar1_r, Gbar2_r), y_e on (Gbar1_e + Gbar2_e) / 2 - e at s', q follows
    G_r + lambda (G_e - e) at s, G_e = -softplus(u_e) <= 0, and both nets step towards y (each net
    from its own initial weights, so neither the max nor the mean is one net alone)."""
    cfg, params, prior, target, state, batch, stats = update_problem(epistemic_weight=5.0)
    s, a_onehot, n = batch["s"], dai.one_hot(batch["a"], 2), len(batch["s"])
    e_at = lambda x: dai.information_gain(params["transition"], prior, x[None], 2)[
        0
    ]  # one state at a time
    u = lambda net, x: dai.mlp(net, x[None])[0].reshape(
        2, 2
    )  # (head, action), before G_e = -softplus(u_e)
    heads = lambda net, x: np.stack([u(net, x)[0], -np.log1p(np.exp(u(net, x)[1]))])
    y, g, loss = np.zeros((n, 2)), np.zeros((n, 2)), 0.0
    for i in range(n):
        q = np.exp(dai.log_softmax(dai.mlp(params["policy"], batch["s_next"][i : i + 1])[0]))
        gbar = [heads(target[net], batch["s_next"][i]) for net in dai.EFE_NETS]
        e_next = e_at(batch["s_next"][i])
        v_r = sum(q[b] * max(gbar[0][0, b], gbar[1][0, b]) for b in (0, 1))
        v_e = sum(q[b] * ((gbar[0][1, b] + gbar[1][1, b]) / 2 - e_next[b]) for b in (0, 1))
        y[i] = -batch["r"][i] + cfg.gamma * v_r, dai.EPISTEMIC_GAMMA * v_e
        g1, g2 = (heads(params[net], s[i]) for net in dai.EFE_NETS)
        g[i] = np.maximum(g1[0], g2[0]) + 5.0 * ((g1[1] + g2[1]) / 2 - e_at(s[i]))
        loss += np.sum((g1[:, batch["a"][i]] - y[i]) ** 2) / n
    y_one_net = y.copy()
    y_one_net[:, 0] = dai.efe_targets(
        batch["r"],
        np.zeros(n),
        batch["terminated"],
        dai.bootstrap_value(
            dai.efe_values(target["efe"], batch["s_next"], 2),
            dai.mlp(params["policy"], batch["s_next"]),
        ),
        cfg.gamma,
        0.9,
    )[:, 0]
    expected = [loss, float(dai.efe_loss(params["efe"], s, a_onehot, y_one_net))]
    q_expected = [
        float(dai.policy_loss(params["policy"], s, gs, 1.0))
        for gs in (g, dai.pair_efe(params, s, 2)[:, 0])
    ]
    before = {net: [(W.copy(), b.copy()) for W, b in params[net]] for net in dai.EFE_NETS}
    metrics = dai.update(params, prior, target, state, batch, stats, cfg)
    assert metrics["efe_loss"] == pytest.approx(expected[0], rel=1e-5)
    assert metrics["efe_loss"] != pytest.approx(expected[1], rel=1e-3)
    assert metrics["policy_loss"] == pytest.approx(q_expected[0], rel=1e-5)
    assert metrics["policy_loss"] != pytest.approx(q_expected[1], rel=1e-3)
    for net in dai.EFE_NETS:  # one Adam step moves every array of both nets, and each nearer to y
        assert all(
            np.any(W != W0) and np.any(b != b0)
            for (W, b), (W0, b0) in zip(params[net], before[net])
        )
        assert dai.efe_loss(params[net], s, a_onehot, y) < dai.efe_loss(before[net], s, a_onehot, y)


def test_the_papers_epistemic_term_is_the_observed_prediction_error_paid_as_reward():
    """raw_epistemic: y_r = -(r + lambda mean_k eps_k(s, a, s')) + gamma V_r(s'), on s' - s, and no
    e at s or s'."""
    cfg, params, prior, target, state, batch, stats = update_problem(
        epistemic_weight=5.0, raw_epistemic=True
    )
    s, a_onehot, n = batch["s"], dai.one_hot(batch["a"], 2), len(batch["s"])
    eps = dai.prediction_error(params["transition"], prior, s, a_onehot, batch["s_next"] - s).mean(
        axis=1
    )
    v = dai.bootstrap_value(
        dai.pair_efe(target, batch["s_next"], 2), dai.mlp(params["policy"], batch["s_next"])
    )
    y = dai.efe_targets(
        batch["r"] + 5.0 * eps, np.zeros(n), batch["terminated"], v, cfg.gamma, dai.EPISTEMIC_GAMMA
    )
    expected = float(dai.efe_loss(params["efe"], s, a_onehot, y))
    g_pair = dai.pair_efe(params, s, 2)
    q_expected = float(dai.policy_loss(params["policy"], s, g_pair[:, 0] + 5.0 * g_pair[:, 1], 1.0))
    metrics = dai.update(params, prior, target, state, batch, stats, cfg)
    assert metrics["efe_loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["policy_loss"] == pytest.approx(q_expected, rel=1e-5)
    assert metrics["epistemic_bonus"] == pytest.approx(5.0 * np.mean(eps), rel=1e-5)


def test_one_efe_net_bootstraps_on_its_own_g_and_has_no_second_net():
    """efe_nets = 1: no "efe2" in theta, y and q's target from the one net (no max, no mean)."""
    cfg, params, prior, target, state, batch, stats = update_problem(
        epistemic_weight=5.0, efe_nets=1
    )
    assert "efe2" not in params and "efe2" not in target
    s, a_onehot, n = batch["s"], dai.one_hot(batch["a"], 2), len(batch["s"])
    e = dai.information_gain(params["transition"], prior, np.concatenate([s, batch["s_next"]]), 2)
    logits_next = dai.mlp(params["policy"], batch["s_next"])
    v = dai.bootstrap_value(dai.efe_values(target["efe"], batch["s_next"], 2), logits_next)
    y = dai.efe_targets(
        batch["r"],
        dai.bootstrap_value(e[n:], logits_next),
        batch["terminated"],
        v,
        cfg.gamma,
        dai.EPISTEMIC_GAMMA,
    )
    g = dai.efe_values(params["efe"], s, 2)
    q_target = g[:, 0] + 5.0 * (g[:, 1] - e[:n])
    expected = [
        float(dai.efe_loss(params["efe"], s, a_onehot, y)),
        float(dai.policy_loss(params["policy"], s, q_target, 1.0)),
    ]
    metrics = dai.update(params, prior, target, state, batch, stats, cfg)
    assert [metrics["efe_loss"], metrics["policy_loss"]] == pytest.approx(expected, rel=1e-4)


def test_the_papers_agent_is_what_its_flags_say():
    """PAPER_AGENT (README, --help): the raw prediction error, lambda 1, beta fixed at 1, one EFE
    net, one transition model, one hidden layer of 100 units; it trains, and beta stays 1."""
    given = vars(dai.build_parser().parse_args(["CartPole-v1", *dai.PAPER_AGENT.split()]))
    cfg = dai.Config(**given, total_steps=400, learning_starts=100, eval_every=200, eval_episodes=1)
    assert (
        cfg.raw_epistemic,
        cfg.epistemic_weight,
        cfg.precision,
        cfg.precision_learning_rate,
    ) == (True, 1, 1, 0)
    assert (cfg.efe_nets, cfg.ensemble_size, cfg.hidden_size, cfg.hidden_layers) == (1, 1, 100, 1)
    sizes = dai.network_sizes(4, 2, 100, 1, 1, 1)
    assert sizes == {"transition": [6, 100, 4], "efe": [4, 100, 4], "policy": [4, 100, 2]}
    params, history = dai.train(cfg, progress=None)
    assert [len(params[net]) for net in params] == [2, 2, 2] and history["precision"] == [1.0, 1.0]
    assert all(bonus > 0 for bonus in history["epistemic_bonus"])  # lambda x eps, paid as reward
    assert max(history["transition_loss"]) < 10  # one head has no prior: f = g, as the paper's
    assert dai.PAPER_AGENT in " ".join(
        subprocess.run(
            [sys.executable, "dai.py", "--help"], cwd=HERE, capture_output=True, text=True
        ).stdout.split()
    )


def test_no_line_is_longer_than_100_characters():
    for name in ("dai.py", "test_dai.py"):
        with open(os.path.join(HERE, name)) as f:
            long = [i + 1 for i, line in enumerate(f) if len(line.rstrip("\n")) > 100]
        assert long == [], f"{name}: lines {long}"


# ---------------------------------------------------------------------------------------------
# The policy loss, precision, Adam, the replay buffer
# ---------------------------------------------------------------------------------------------
def test_policy_loss_is_zero_at_the_target_and_positive_elsewhere():
    rng = np.random.default_rng(2)
    beta, g = 2.5, rng.normal(size=(1, 4))
    s = rng.normal(size=(1, 3))
    assert dai.policy_loss([(np.zeros((3, 4)), -beta * g[0])], s, g, beta) == pytest.approx(
        0.0, abs=1e-12
    )
    for _ in range(20):
        assert (
            dai.policy_loss([(np.zeros((3, 4)), -beta * g[0] + rng.normal(size=4))], s, g, beta)
            > 1e-6
        )


def test_log_softmax_is_stable():
    out = dai.log_softmax(np.array([[1000.0, 0.0, -1000.0]]))
    assert np.all(np.isfinite(out)) and out[0, 0] == pytest.approx(0.0)


def test_precision_rises_when_the_policy_is_too_random_and_falls_when_it_is_too_sure():
    """One update's step on log(1/beta): down (beta up) when q's entropy at s' is above target."""
    for peaked, rises in ((False, True), (True, False)):  # q near uniform, H ~ log 2; or H ~ 0
        cfg, params, prior, target, state, batch, stats = update_problem(target_entropy=0.5)
        params["policy"][-1][1][...] = [8.0, -8.0] if peaked else 0.0
        dai.update(params, prior, target, state, batch, stats, cfg)
        assert (dai.precision_of(state) > 1.0) == rises


def test_a_zero_precision_learning_rate_holds_beta_fixed():
    _, fixed = dai.train(small_config(precision=5.0, precision_learning_rate=0.0), progress=None)
    _, learned = dai.train(small_config(precision=5.0), progress=None)
    assert len(set(fixed["precision"])) == 1 and fixed["precision"][0] == pytest.approx(5.0)
    assert learned["precision"][-1] != pytest.approx(5.0)


def test_adam_minimises_a_quadratic_and_its_first_step_has_size_lr():
    x = np.array([3.0, -2.0])
    state = dai.adam_init(x)
    for _ in range(2000):
        dai.adam_step(x, 2 * x, state, lr=0.05)
    assert np.all(np.abs(x) < 1e-2) and state["t"] == 2000
    y = np.array([1.0, -1.0])
    dai.adam_step(y, np.array([10.0, -0.1]), dai.adam_init(y), lr=0.1)
    np.testing.assert_allclose(y, [0.9, -0.9], rtol=1e-5)


def test_polyak_moves_the_target_a_share_tau_of_the_way():
    target, online = [(np.zeros((2, 2)), np.zeros(2))], [(np.ones((2, 2)), np.full(2, 2.0))]
    dai.polyak(target, online, 0.25)
    np.testing.assert_allclose(target[0][0], 0.25)
    np.testing.assert_allclose(target[0][1], 0.5)


def test_buffer_wraps_around_and_samples_stored_transitions():
    buf = dai.buffer_init(3, 2, np.random.default_rng(0), 2)
    for i in range(5):
        dai.buffer_add(buf, np.full(2, i), i % 2, float(i), np.full(2, i + 1), i == 4)
    assert (
        buf["size"] == 3 and buf["index"] == 2 and sorted(buf["r"]) == [2.0, 3.0, 4.0]
    )  # 0 and 1 overwritten
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
        self.observation_space, self.action_space = gym.spaces.Discrete(n), gym.spaces.Discrete(2)

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
    _, history = dai.train(
        small_config(env_id="TestCorridor-v0", total_steps=300, learning_starts=50), progress=None
    )
    ends = [stored[end - 1] for end in history["episode_step"]]  # last transition of each episode
    at_goal = [t[3].argmax() == 3 for t in ends]
    assert any(at_goal) and not all(at_goal)  # some episodes terminated, some hit the time limit
    assert all(length == 6 for length, goal in zip(history["episode_length"], at_goal) if not goal)
    assert [bool(t[4]) for t in ends] == at_goal  # only termination is stored as terminal
    assert sum(bool(t[4]) for t in stored) == sum(at_goal)


def test_discrete_observations_are_one_hot():
    np.testing.assert_array_equal(dai.encode(4, gym.spaces.Discrete(5, start=2)), [0, 0, 1, 0, 0])
    assert dai.encode(np.array([1.0, 2.0]), gym.spaces.Box(-1, 1, (2,))).dtype == np.float32


@pytest.mark.parametrize(
    "env_id, words",
    [
        ("NoSuchEnv-v0", "cannot make environment"),
        ("Pendulum-v1", "supports Discrete actions with flat (1-D) Box or Discrete observations"),
        ("Blackjack-v1", "observation space Tuple"),
    ],
)
def test_unsupported_environments_are_refused(env_id, words):
    with pytest.raises(dai.UsageError) as refused:
        dai.make_env(env_id)
    assert words in str(refused.value)


@pytest.mark.parametrize("env_id", ["Taxi-v4", "CliffWalking-v1", "FrozenLake8x8-v1", "Acrobot-v1"])
def test_other_environments_run(env_id):
    """Discrete (one-hot) and Box observations; CliffWalking has no time limit of its own."""
    cfg = small_config(env_id=env_id, total_steps=120, learning_starts=40, batch_size=8,
                       hidden_size=8, eval_every=0, eval_episodes=1)
    _, history = dai.train(cfg, progress=None)
    assert len(history["eval_return"]) == 1 and np.isfinite(history["eval_return"][0])
    assert dai.make_env(env_id).spec.max_episode_steps is not None


# ---------------------------------------------------------------------------------------------
# Training: determinism and learning checks
# ---------------------------------------------------------------------------------------------
def test_same_seed_same_run_different_seed_different_run():
    (p1, h1), (p2, h2), (_, h3) = [
        dai.train(small_config(seed=seed), progress=None) for seed in (3, 3, 4)
    ]
    for key in ("episode_return", "eval_return", "efe_loss", "precision"):
        assert h1[key] == h2[key]
    for name in p1:
        for (W1, b1), (W2, b2) in zip(p1[name], p2[name]):
            np.testing.assert_array_equal(W1, W2)
    assert h1["episode_return"] != h3["episode_return"]


def test_history_has_the_documented_series():
    _, h = dai.train(small_config(), progress=None)
    assert set(h) == set(dai.HISTORY)
    assert len(h["episode_return"]) == len(h["episode_length"]) == len(h["episode_step"]) > 0
    assert h["eval_step"] == [300, 600] and all(len(h[key]) == 2 for key in dai.HISTORY[3:])
    assert all(np.isfinite(h["efe_loss"])) and sum(h["episode_length"]) <= 600


def test_cartpole_learns_well_above_random():
    """A random policy scores ~22 on CartPole-v1; a broken agent stays near it."""
    cfg = dai.Config(total_steps=5000, learning_starts=500, eval_every=0, eval_episodes=10, seed=1)
    assert dai.train(cfg, progress=None)[1]["eval_return"][-1] > 100


def test_discrete_observation_env_learns_frozenlake():
    cfg = dai.Config(
        env_id="FrozenLake-v1",
        env_kwargs='{"is_slippery": false}',
        total_steps=10_000,
        learning_starts=500,
        hidden_size=32,
        eval_every=0,
        eval_episodes=1,
        seed=0,
    )
    _, history = dai.train(cfg, progress=None)
    assert history["eval_return"][-1] == 1.0  # the greedy policy walks to the goal
    assert (
        np.mean(history["episode_return"][-20:]) >= 0.4
    )  # and the sampling one mostly does (random: ~0.015)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, os.path.join(HERE, "dai.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=HERE,
        **kwargs,
    )


def test_cli_runs_the_readme_command_with_a_tiny_budget():
    out = run_cli(
        "CartPole-v1",
        "--total-steps",
        "400",
        "--learning-starts",
        "100",
        "--eval-episodes",
        "2",
        "--eval-every",
        "200",
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["eval_step 200", "eval_step 400"]
    assert [part.split()[0] for part in lines[0].split(" | ")] == list(dai.HISTORY[3:])


def test_cli_help_lists_every_config_field_with_its_default_in_at_most_80_lines():
    out = run_cli("--help")
    assert out.returncode == 0 and len(out.stdout.splitlines()) <= 80
    text = " ".join(out.stdout.split())
    for field in dai.dataclasses.fields(dai.Config)[1:]:
        assert "--" + field.name.replace("_", "-") in text
    assert "(default: 0.995)" in text


@pytest.mark.parametrize(
    "args, words",
    [
        (["NoSuchEnv-v0"], "cannot make environment 'NoSuchEnv-v0'"),
        (["Pendulum-v1"], "supports Discrete actions"),
        (["CartPole-v1", "--gamma", "1.5"], "gamma must be in [0, 1)"),
        (["CartPole-v1", "--gamma", "nan"], "gamma must be in [0, 1)"),
        (
            ["CartPole-v1", "--batch-size", "64", "--buffer-size", "10"],
            "buffer_size must be at least batch_size",
        ),
        (["CartPole-v1", "--learning-rate", "0"], "learning_rate must be > 0"),
        (["CartPole-v1", "--total-steps", "-5"], "total_steps must be at least 1"),
        (["CartPole-v1", "--tau", "0"], "tau must be in (0, 1]"),
        (["CartPole-v1", "--epistemic-weight", "-0.1"], "epistemic_weight must be >= 0"),
        (["CartPole-v1", "--ensemble-size", "1"], "ensemble_size must be at least 2"),
        (["CartPole-v1", "--efe-nets", "3"], "efe_nets must be 1 or 2"),
        (["CartPole-v1", "--target-entropy", "1.5"], "target_entropy must be in (0, 1)"),
        (["CartPole-v1", "--total-steps", "ten"], "invalid int value"),
        (["CartPole-v1", "--no-such-flag"], "unrecognized arguments"),
        (["CartPole-v1", "--save", "/no/such/folder/agent.npz"], "the folder does not exist"),
        (["CartPole-v1", "--log", "/no/such/folder/log.csv"], "the folder does not exist"),
        (["CartPole-v1", "--log", "README.md"], "--log README.md already exists"),
        (["FrozenLake-v1", "--env-kwargs", "{is_slippery: false}"], "JSONDecodeError"),
        (["FrozenLake-v1", "--env-kwargs", "[1, 2]"], "must be a mapping"),
        (
            ["FrozenLake-v1", "--env-kwargs", '{"slippery": false}'],
            "cannot make environment 'FrozenLake-v1' (env_kwargs",
        ),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(args, words):
    out = run_cli(*args)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("dai.py: error:") and words in last


def test_main_returns_exit_codes(capsys):
    assert dai.main(["NoSuchEnv-v0"]) == 2
    assert capsys.readouterr().err.startswith(
        "dai.py: error: cannot make environment 'NoSuchEnv-v0'"
    )
    for args, code in ((["CartPole-v1", "--no-such-flag"], 2), (["--help"], 0)):  # argparse exits
        with pytest.raises(SystemExit) as stop:
            dai.main(args)
        assert stop.value.code == code
    capsys.readouterr()
    assert (
        dai.main(
            [
                "CartPole-v1",
                "--total-steps",
                "150",
                "--learning-starts",
                "100",
                "--eval-episodes",
                "1",
                "--hidden-size",
                "8",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.startswith("eval_step 150 | eval_return ")


def test_readme_documents_every_flag_and_the_test_command_ci_runs():
    readme = open(os.path.join(HERE, "README.md")).read()
    for field in dai.dataclasses.fields(dai.Config)[1:]:
        assert "--" + field.name.replace("_", "-") in readme, field.name
    assert (
        "python -m pytest -q" in readme
        and "python -m pytest -q" in open(os.path.join(HERE, ".ci", "run")).read()
    )


# ---------------------------------------------------------------------------------------------
# Checkpoints, interruption, non-finite values
# ---------------------------------------------------------------------------------------------
def write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("ckpt") / "good.npz")
    dai.train(
        small_config(total_steps=300, buffer_size=400, eval_every=0, save=path), progress=None
    )
    return path


def test_checkpoint_round_trip_gives_identical_actions_and_identical_continued_training(tmp_path):
    """With the default epistemic term, so the running statistics, the heads' prior and the buffer's
    masks are part of what must survive the round trip."""
    path = str(tmp_path / "agent.npz")
    params, history = dai.train(small_config(save=path, ensemble_size=3), progress=None)
    ckpt, saved = dai.read_checkpoint(path)
    assert int(ckpt["step"]) == 600 and int(ckpt["buffer.delta_stats.count"]) == 600
    cfg = dai.Config(**{**saved, "total_steps": 900})
    assert cfg.hidden_size == 16 and cfg.ensemble_size == 3 and not cfg.raw_epistemic
    sizes = dai.network_sizes(4, 2, 16, 2, 3)
    state, buf, step = dai.restore(ckpt, cfg, sizes)
    fresh = dai.prior_of(dai.init_state(np.random.default_rng(cfg.seed), sizes, 1.0, 3), sizes)[
        "layers"
    ]
    for (W, b), (W0, b0) in zip(
        dai.prior_of(state, sizes)["layers"][:-1], fresh[:-1]
    ):  # fixed since drawn
        np.testing.assert_array_equal(W, W0)
    scale = (
        dai.prior_of(state, sizes)["layers"][-1][0] / fresh[-1][0]
    )  # the output layer scaled once
    assert np.allclose(scale, scale.flat[0]) and scale.flat[0] > 0
    np.testing.assert_array_equal(buf["mask"], ckpt["buffer.mask"])
    assert step == 600 and set(np.unique(buf["mask"])) == {0.0, 1.0}
    loaded = dai.param_views(state["theta"], sizes)
    states = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    assert [dai.act(params["policy"], s) for s in states] == [
        dai.act(loaded["policy"], s) for s in states
    ]
    runs = [
        dai.train(cfg, progress=None, checkpoint=dai.read_checkpoint(path)[0]) for _ in range(2)
    ]
    assert runs[0][1]["episode_return"] == runs[1][1]["episode_return"]
    assert runs[0][1]["eval_step"] == [900] and runs[0][1]["efe_loss"] == runs[1][1]["efe_loss"]


@pytest.mark.parametrize(
    "kind, words",
    [
        ("missing", "does not exist"),
        ("truncated", "is not a readable checkpoint"),
        ("text", "is not a readable checkpoint"),
        ("foreign npz", f"is not a dai.py checkpoint of format {dai.CHECKPOINT_VERSION}"),
        ("other version", f"is not a dai.py checkpoint of format {dai.CHECKPOINT_VERSION}"),
        (
            "other env",
            "the checkpoint does not fit Acrobot-v1 with these flags (state.theta differs)",
        ),
        ("other hidden size", "load it with the env_id and network flags it was saved with"),
        ("other ensemble", "does not fit CartPole-v1 with these flags (state.theta differs)"),
        ("other EFE nets", "does not fit CartPole-v1 with these flags (state.theta differs)"),
        ("other buffer", "(buffer.s differs)"),
    ],
)
def test_bad_checkpoints_are_refused_with_their_reason(tmp_path, good_checkpoint, kind, words):
    path, args = str(tmp_path / "bad.npz"), ["CartPole-v1"]
    data = open(good_checkpoint, "rb").read()
    if kind == "missing":
        pass
    elif kind == "truncated":
        open(path, "wb").write(data[: len(data) // 2])
    elif kind == "text":
        open(path, "w").write("not a checkpoint\n")
    elif kind == "foreign npz":
        write_npz(path, weights=np.zeros(3))
    elif kind == "other version":
        write_npz(path, **{**np.load(good_checkpoint), "format_version": np.array(3)})
    else:
        path = good_checkpoint
        args = {
            "other env": ["Acrobot-v1"],
            "other hidden size": ["CartPole-v1", "--hidden-size", "8"],
            "other ensemble": ["CartPole-v1", "--ensemble-size", "3"],
            "other EFE nets": ["CartPole-v1", "--efe-nets", "1"],
            "other buffer": ["CartPole-v1", "--buffer-size", "500"],
        }.get(kind, args)
    out = run_cli(*args, "--load", path, "--eval-episodes", "1")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dai.py: error:") and words in lines[0]


def corruptions(ckpt, rng):
    """Damaged copies of a checkpoint's arrays: each array dropped, turned into another kind or
    shape, or swapped with another; and the config as another JSON value, a field missing or added,
    or a value out of range."""
    keys, config = sorted(ckpt), json.loads(str(ckpt["config"]))
    for key in keys:
        value = ckpt[key]
        yield f"drop {key}", {k: v for k, v in ckpt.items() if k != key}
        for name, bad in (
            ("as 1-element array", value.reshape(-1)[:1].copy() if value.size else np.zeros(1)),
            ("as text", np.array("abc")),
            ("as a float", np.array(0.5)),
            ("as an int", np.array(7)),
            ("as a 2-d array", np.zeros((2, 3))),
        ):
            if bad.shape != value.shape or bad.dtype.kind != value.dtype.kind:
                yield f"{key} {name}", {**ckpt, key: bad}
    for _ in range(60):
        a, b = rng.choice(keys, 2, replace=False)
        if ckpt[a].shape != ckpt[b].shape or ckpt[a].dtype.kind != ckpt[b].dtype.kind:
            yield f"swap {a} {b}", {**ckpt, a: ckpt[b], b: ckpt[a]}
    edited = (
        {k: v for k, v in config.items() if k != "tau"},
        {**config, "extra": 1},
        {**config, "gamma": float("nan")},
        {**config, "buffer_size": -3},
        {**config, "env_kwargs": "[1]"},
    )
    for text in ("5", "[1, 2]", "{", '"config"', "null", *map(json.dumps, edited)):
        yield f"config {text[:30]}", {**ckpt, "config": np.array(text)}


def test_generated_corruptions_of_a_real_checkpoint_are_all_refused_in_one_line(
    tmp_path, good_checkpoint, capsys
):
    """Hundreds of damaged checkpoints, each evaluated and resumed through main(): exit code 2 with
    one line, never an exception; a byte flip may also load (exit 0) where the .npz's CRCs allow."""
    rng = np.random.default_rng(0)
    ckpt = dict(np.load(good_checkpoint))
    data = open(good_checkpoint, "rb").read()
    path, cases = str(tmp_path / "bad.npz"), 0
    for name, arrays in corruptions(ckpt, rng):
        write_npz(path, **arrays)
        for mode in ([], ["--total-steps", "310"]):  # evaluated (at its end), resumed
            capsys.readouterr()
            code = dai.main(
                ["CartPole-v1", "--load", path, "--eval-episodes", "1", "--eval-every", "0", *mode]
            )
            err = capsys.readouterr().err.strip().splitlines()
            assert code == 2 and len(err) == 1 and err[0].startswith("dai.py: error:"), (
                name,
                mode,
                err,
            )
            cases += 1
    for cut in rng.integers(1, len(data), 40):
        open(path, "wb").write(data[:cut])
        capsys.readouterr()
        assert dai.main(["CartPole-v1", "--load", path, "--eval-episodes", "1"]) == 2, cut
        cases += 1
    for position in rng.integers(0, len(data), 120):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        open(path, "wb").write(bytes(flipped))
        capsys.readouterr()
        code = dai.main(["CartPole-v1", "--load", path, "--eval-episodes", "1"])
        assert code in (0, 2) and len(capsys.readouterr().err.strip().splitlines()) == (
            code == 2
        ), position
        cases += 1
    assert cases >= 300


def test_loading_a_finished_run_evaluates_it_and_a_higher_total_trains_on(good_checkpoint):
    out = run_cli("CartPole-v1", "--load", good_checkpoint, "--eval-episodes", "3")
    assert out.returncode == 0 and out.stdout.startswith("eval_step 300 | eval_return "), out.stderr
    ckpt, saved = dai.read_checkpoint(good_checkpoint)
    _, history = dai.train(dai.Config(**saved), progress=None, checkpoint=ckpt)
    assert history["eval_step"] == [] and history["episode_step"] == []  # nothing trained
    _, history = dai.train(
        dai.Config(**{**saved, "total_steps": 350}), progress=None, checkpoint=ckpt
    )
    assert history["eval_step"] == [350] and min(history["episode_step"]) > 300


def test_a_crash_during_a_save_leaves_the_old_checkpoint_loadable(
    tmp_path, good_checkpoint, monkeypatch
):
    path = str(tmp_path / "agent.npz")
    open(path, "wb").write(open(good_checkpoint, "rb").read())
    before = open(path, "rb").read()
    ckpt, saved = dai.read_checkpoint(path)
    cfg, sizes = dai.Config(**saved), dai.network_sizes(4, 2, 16, 2, 5)
    state, buf, step = dai.restore(ckpt, cfg, sizes)

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(dai.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        dai.save_checkpoint(path, cfg, step + 1, state, buf)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == [
        "agent.npz"
    ]  # no temporary file left


def test_save_refuses_to_overwrite_an_existing_file(tmp_path):
    precious = tmp_path / "notes.txt"
    precious.write_text("my notes")
    out = run_cli("CartPole-v1", "--save", str(precious), "--total-steps", "10")
    assert (
        out.returncode == 2
        and "already exists" in out.stderr
        and precious.read_text() == "my notes"
    )


def test_ctrl_c_stops_cleanly_leaving_a_checkpoint_and_a_log_of_every_line(tmp_path):
    ckpt, log = tmp_path / "agent.npz", tmp_path / "log.csv"
    args = [
        "CartPole-v1",
        "--total-steps",
        "100000",
        "--learning-starts",
        "200",
        "--hidden-size",
        "16",
        "--save",
        str(ckpt),
        "--log",
        str(log),
        "--eval-every",
        "200",
        "--eval-episodes",
        "1",
    ]
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "dai.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=HERE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # a shell's background job inherits SIGINT ignored; Ctrl-C must reach the child
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = [proc.stdout.readline() for _ in range(3)]  # three progress lines: it is training
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert (
        "Traceback" not in err
        and "interrupted at step" in err
        and seen[-1].startswith("eval_step 600 |")
    )
    assert int(dai.read_checkpoint(str(ckpt))[0]["step"]) >= 600  # saved at the interruption
    with open(log) as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(dai.HISTORY[3:]) and len(rows) - 1 >= len(seen + out.splitlines())
    for row, line in zip(rows[1:], seen + out.splitlines()):  # the same numbers as the line
        assert [f"{k} {v}" for k, v in zip(rows[0], row)][0] == line.split(" | ")[0]
        assert float(row[1]) == pytest.approx(float(line.split(" | ")[1].split()[1]), rel=1e-3)


class NanAfter(gym.Env):
    """CartPole-like observations; the reward becomes NaN after 400 steps."""

    def __init__(self):
        self.observation_space, self.action_space = gym.spaces.Box(
            -1, 1, (2,), np.float32
        ), gym.spaces.Discrete(2)
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
    cfg = small_config(
        env_id="TestNanAfter-v0", total_steps=2000, learning_starts=100, eval_every=300, save=path
    )
    with pytest.raises(dai.StopTraining) as stop:
        dai.train(cfg, progress=None)
    assert stop.value.args[1] == 1
    assert (
        "efe_loss became nan at step" in stop.value.args[0]
        and "keeps the last good checkpoint" in stop.value.args[0]
    )
    ckpt = dai.read_checkpoint(path)[0]
    assert int(ckpt["step"]) == 300 and np.all(np.isfinite(ckpt["state.theta"]))
