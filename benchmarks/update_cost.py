"""Milliseconds per minibatch update and per env step (acting), with dai.py's defaults.

    python benchmarks/update_cost.py                 # CartPole-v1 sizes
    python benchmarks/update_cost.py Acrobot-v1 --updates 500
    python benchmarks/update_cost.py --set epistemic_weight=0     # reward alone: no information gain

Beside it, in the same run: the floor, the same update with every gradient written out in NumPy
(handwritten_gradient, no autograd; a test checks it against dai.py's autograd gradients), and
the update with autograd tracing the MLP itself (dai.mlp replaced by a plain autograd.numpy MLP),
to show what the hand-written backward pass (dai.mlp_vjp) buys.
Run it on an otherwise idle machine: the figures are per process, one BLAS thread.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads

import autograd.numpy as anp  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import dai  # noqa: E402
from solve import parse_overrides  # noqa: E402


def traced_mlp(layers, x):
    """The MLP written for autograd to trace: every dot, add and ReLU is a recorded operation."""
    for W, b in layers[:-1]:
        x = anp.maximum(anp.dot(x, W) + b, 0.0)
    W, b = layers[-1]
    return anp.dot(x, W) + b


def mlp_backward(layers, inputs, g):
    """dL/dW, dL/db of each layer, from the layers' inputs (dai.mlp_inputs) and dL/d(output) g."""
    grads = []
    for (W, b), h in zip(reversed(layers), reversed(inputs)):
        grads.append((h.T @ g, g.sum(axis=0)))
        g = (g @ W.T) * (h > 0)
    return grads[::-1]


def handwritten_gradient(params, prior, target, state, batch, delta_stats, cfg):
    """The gradient of L_T + L_G (each of the pair) + L_q in theta's order, as dai.update computes it with
    autograd, with each loss's derivative written out: dL_T/df_k = m_k (f_k - d) / sum(m) for the heads,
    dL_G/dG_k = 2 (G_k - y_k)/B at the action taken, dL_q/dz = q (log q - log p - KL)/B for the policy's logits z."""
    s, s_next, r, terminated, mask = batch["s"], batch["s_next"], batch["r"], batch["terminated"], batch["mask"]
    B, n_actions, lam = len(s), params["policy"][-1][1].shape[0], cfg.epistemic_weight
    a_onehot = dai.one_hot(batch["a"], n_actions)
    d = dai.transition_target(s, s_next, delta_stats, prior["projection"], cfg.raw_epistemic)
    x = np.concatenate([s, a_onehot], axis=1)
    t_inputs, f = dai.mlp_inputs(params["transition"], x)
    f = (f + dai.mlp(prior["layers"], x)).reshape(B, -1, d.shape[1])  # (batch, K, len(d))
    e = e_next = np.zeros((B, n_actions), np.float32)
    if cfg.raw_epistemic:
        r = r + lam * np.mean(0.5 * np.sum((d[:, None] - f) ** 2, axis=2), axis=1)
    elif lam > 0:
        e, e_next = np.split(dai.information_gain(params["transition"], prior, np.concatenate([s, s_next]), n_actions), 2)
    logits_next = dai.mlp(params["policy"], s_next)
    heads = lambda u: np.stack([u[:, 0], -np.logaddexp(0, u[:, 1])], 1)  # (G_r, G_e = -softplus(u_e))
    g_next = [heads(dai.mlp(target[net], s_next).reshape(B, 2, n_actions)) for net in dai.EFE_NETS]
    g_next = np.stack([np.maximum(g_next[0][:, 0], g_next[1][:, 0]), (g_next[0][:, 1] + g_next[1][:, 1]) / 2], 1)
    y = dai.efe_targets(r, dai.bootstrap_value(e_next, logits_next), terminated, dai.bootstrap_value(g_next, logits_next),
                        cfg.gamma, dai.EPISTEMIC_GAMMA)  # (batch, 2)
    grads, g_pair = {}, []
    for net in dai.EFE_NETS:
        g_inputs, g_net = dai.mlp_inputs(params[net], s)
        u = g_net.reshape(B, 2, n_actions)
        g_pair.append(heads(u))  # (batch, heads, actions)
        g_taken = np.sum(g_pair[-1] * a_onehot[:, None, :], axis=2)  # (batch, 2)
        dg = (2.0 * (g_taken - y) / B)[:, :, None] * a_onehot[:, None, :]
        dg[:, 1] *= -1 / (1 + np.exp(-u[:, 1]))  # dG_e/du_e = -sigmoid(u_e)
        grads[net] = mlp_backward(params[net], g_inputs, dg.reshape(B, -1).astype(np.float32))
    p_inputs, logits = dai.mlp_inputs(params["policy"], s)
    g = np.maximum(g_pair[0][:, 0], g_pair[1][:, 0]) + lam * ((g_pair[0][:, 1] + g_pair[1][:, 1]) / 2 - e)
    logq, logp = dai.log_softmax(logits), dai.log_softmax(-dai.precision_of(state) * g)
    q = np.exp(logq)
    kl = np.sum(q * (logq - logp), axis=1, keepdims=True)
    df = mask[:, :, None] * (f - d[:, None]) / np.sum(mask)  # (batch, K, obs_dim)
    grads["transition"] = mlp_backward(params["transition"], t_inputs, df.reshape(B, -1).astype(np.float32))
    grads["policy"] = mlp_backward(params["policy"], p_inputs, (q * (logq - logp - kl) / B).astype(np.float32))
    return np.concatenate([x.ravel() for net in params for W_b in grads[net] for x in W_b])


def handwritten_update(params, prior, target, state, batch, delta_stats, cfg):
    """dai.update's Adam step on theta from handwritten_gradient (beta's step left out: one scalar)."""
    flat_grad = handwritten_gradient(params, prior, target, state, batch, delta_stats, cfg)
    dai.adam_step(state["theta"], flat_grad, state["adam_theta"], cfg.learning_rate)


def ms_per_update(cfg, sizes, n, update=dai.update):
    rng = np.random.default_rng(0)
    state = dai.init_state(rng, sizes, cfg.precision, cfg.ensemble_size)
    params = dai.param_views(state["theta"], sizes)
    prior = dai.prior_of(state, sizes)
    target = dai.param_views(state["target_theta"], {n: sizes[n] for n in dai.EFE_NETS})
    obs_dim, n_actions = sizes["efe"][0], sizes["policy"][-1]
    buf = dai.buffer_init(10_000, obs_dim, rng, cfg.ensemble_size)
    for _ in range(10_000):
        dai.buffer_add(buf, rng.normal(size=obs_dim), rng.integers(n_actions), 1.0, rng.normal(size=obs_dim), 0.0)
    step = lambda: update(params, prior, target, state, dai.buffer_sample(buf, rng, cfg.batch_size),
                          buf["delta_stats"], cfg)
    for _ in range(20):  # warm-up
        step()
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n * 1e3


def ms_per_env_step(cfg, sizes, n):
    env = dai.make_env(cfg.env_id, cfg.env_kwargs)
    rng = np.random.default_rng(0)
    params = dai.param_views(dai.init_state(rng, sizes, cfg.precision, cfg.ensemble_size)["theta"], sizes)
    obs, _ = env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(n):
        a = dai.act(params["policy"], dai.encode(obs, env.observation_space), rng)
        obs, _, terminated, truncated, _ = env.step(int(a) + int(env.action_space.start))
        if terminated or truncated:
            obs, _ = env.reset()
    return (time.perf_counter() - start) / n * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("env_id", nargs="?", default="CartPole-v1")
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="Config overrides")
    args = parser.parse_args()
    cfg = dai.Config(env_id=args.env_id, **parse_overrides(args.set))
    sizes = dai.sizes_of(dai.make_env(cfg.env_id, cfg.env_kwargs), cfg)
    n_params = dai.init_params(np.random.default_rng(0), sizes)[0].size
    print(f"# {args.env_id}: hidden {cfg.hidden_layers}x{cfg.hidden_size}, batch {cfg.batch_size}, {n_params} parameters")
    update_ms = ms_per_update(cfg, sizes, args.updates)
    step_ms = ms_per_env_step(cfg, sizes, 5 * args.updates)
    floor_ms = ms_per_update(cfg, sizes, args.updates, handwritten_update)
    print(f"update (dai.py, hand-written MLP backward): {update_ms:.2f} ms")
    print(f"update with every gradient written out (the floor): {floor_ms:.2f} ms, dai.py {update_ms / floor_ms:.2f}x it")
    print(f"env step + acting: {step_ms:.3f} ms")
    print(f"implied env steps per second at an update every {cfg.train_every} step(s): "
          f"{1e3 / (step_ms + update_ms / cfg.train_every):.0f}")
    dai.mlp = traced_mlp  # the losses look mlp up at call time
    print(f"update with autograd tracing the MLP instead: {ms_per_update(cfg, sizes, args.updates // 4):.2f} ms")


if __name__ == "__main__":
    main()
