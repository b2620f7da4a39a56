"""Deep active inference as variational policy gradients (Millidge 2019), in one file.

    pip install -r requirements.txt && python dai.py CartPole-v1    # train with the defaults: 17.5k env steps
    python dai.py --help                                            # every hyperparameter, its meaning and default

The agent acts to minimise the expected free energy (EFE) of the future. Reward is the log prior preference
over outcomes, so -r is the pragmatic part; the epistemic part is what an action's outcome would teach the
agent about its transition model, and it makes the action *more* attractive (the paper's sign).

    transition target  d = ((s' - s - mu) / sigma) R, running mean mu and total variance sigma^2  transition_target()
    K heads            f_k(s, a) = g_k(s, a) + p_k(s, a), p_k a fixed random prior      ensemble_predictions()
    transition loss    L_T = mean 1/2 |d - f_k(s, a)|^2, each head on its own half       transition_loss()
    information gain   e(s, a) = 1/2 sum_d Var_k f_k,d(s, a), for every action a         information_gain()
    EFE pair           two nets, each with heads G_r and G_e <= 0; max(G1, G2) on G_r, the mean on G_e  pair_efe()
    EFE targets        y_r = -r + gamma (1 - terminated) sum_a' q(a'|s') Gbar_r(s', a')   efe_targets()
                       y_e = gamma_e (1 - terminated) sum_a' q(a'|s') [Gbar_e - e](s', a')
    EFE loss           L_G = mean sum_k (G_k(s, a) - y_k)^2, for each net of the pair    efe_loss()
    policy loss        L_q = KL[q(.|s) || softmax(-beta (G_r + lambda (G_e - e))(s, .))]  policy_loss()
    precision          beta = 1/alpha, log alpha descends log alpha (H[q] - H_tgt)      precision_gradient()
    target nets        Gbar <- (1 - tau) Gbar + tau G                                  polyak()

e is fresh from the model at every update, at s and s', so it leaves the targets as soon as the heads agree.
Minimising L_q is maximum-entropy RL with -G for Q, beta the inverse temperature: with lambda = 0
discrete SAC (clipped double Q) on -G_r, no entropy term in V(s') = E_q[Gbar_r]; with beta -> oo, greedy Q-learning.
"""

import argparse
import dataclasses
import inspect
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: one BLAS thread, the fastest at these sizes
import autograd.numpy as anp  # inside every function that autograd differentiates
import gymnasium as gym
import numpy as np  # everywhere else
from autograd import value_and_grad
from autograd.extend import defvjp, primitive

# -------------------- Config -------------------------------------------------------------------
@dataclasses.dataclass
class Config:
    """Every hyperparameter. Each field is a command-line flag of the same name in kebab case."""
    env_id: str = "CartPole-v1"  # Gymnasium id: Discrete actions, flat Box or Discrete observations
    seed: int = 0  # seeds the env, its action space and the one NumPy generator used for the rest
    total_steps: int = 17_500  # environment steps to train for (when resuming: the total, steps done included)
    hidden_size: int = 128  # ReLU units in each hidden layer of every network
    hidden_layers: int = 2  # hidden layers in each network
    learning_rate: float = 2e-3  # Adam step size for the networks
    batch_size: int = 256  # transitions per minibatch update
    buffer_size: int = 100_000  # replay buffer capacity (the oldest transitions are overwritten)
    learning_starts: int = 1_000  # env steps collected (with the uniform initial policy) before the first update
    train_every: int = 2  # env steps between minibatch updates
    gamma: float = 0.995  # discount of future expected free energy, in [0, 1)
    tau: float = 0.04  # Polyak rate of the target EFE nets, in (0, 1]; 1 = a hard copy every update
    ensemble_size: int = 5  # K >= 2 transition heads, whose disagreement estimates the information gain (raw: 1 allowed)
    epistemic_weight: float = 10.0  # lambda, the weight of the information gain in G, >= 0 (0: reward alone)
    raw_epistemic: bool = False  # the paper's epistemic term: lambda x the observed prediction error, paid as reward
    precision: float = 1.0  # beta: the fixed precision, or its starting value when learned
    target_entropy: float = 0.3  # policy entropy beta is learned to hold, as a fraction of log(n_actions), in (0, 1)
    precision_learning_rate: float = 6e-4  # Adam step size of log(1/beta), >= 0; 0 = a fixed precision
    eval_every: int = 2_500  # env steps between evaluations, each with a progress line; 0 = only at the end
    eval_episodes: int = 20  # episodes per evaluation (mode of q, separate env seeded seed + 10000)
    env_kwargs: str = ""  # JSON object of keyword arguments for gymnasium.make, e.g. '{"is_slippery": false}'
    save: str = ""  # checkpoint file (.npz), written at every evaluation, at the end and on Ctrl-C
    load: str = ""  # checkpoint to resume from (its config, then the flags given)
    eval_only: bool = False  # with load: evaluate the saved agent for eval_episodes, no training
RUN_OPTIONS = ("save", "load", "eval_only")  # not hyperparameters: not stored in a checkpoint

class UsageError(Exception): """Bad input (a flag, an environment, a checkpoint): one line, exit code 2."""

def check_config(cfg):
    """Refuse nonsense hyperparameters with a one-line reason (NaN fails every range)."""
    counts = ("total_steps", "hidden_size", "hidden_layers", "batch_size", "train_every", "eval_episodes")
    rules = [(getattr(cfg, name) >= 1, f"{name} must be at least 1") for name in counts] + [
        (cfg.buffer_size >= cfg.batch_size, "buffer_size must be at least batch_size"),
        (cfg.learning_starts >= 0 and cfg.eval_every >= 0, "learning_starts and eval_every must be >= 0"),
        (cfg.learning_rate > 0 and cfg.precision_learning_rate >= 0, "learning_rate must be > 0, precision_learning_rate >= 0"),
        (0 <= cfg.gamma < 1, "gamma must be in [0, 1)"),
        (0 < cfg.tau <= 1, "tau must be in (0, 1]"),
        (0 <= cfg.epistemic_weight < np.inf, "epistemic_weight must be >= 0"),
        (cfg.ensemble_size >= 2 or (cfg.raw_epistemic and cfg.ensemble_size == 1), "ensemble_size must be at least 2"),
        (0 < cfg.precision < np.inf, "precision must be > 0"),
        (0 < cfg.target_entropy < 1, "target_entropy must be in (0, 1)")]
    for ok, message in rules:
        if not ok:
            raise UsageError(message)
    parse_env_kwargs(cfg.env_kwargs)

# -------------------- Maths helpers ------------------------------------------------------------
def log_softmax(x):
    """log softmax over the last axis, x - logsumexp(x), stable for large |x|."""
    z = x - anp.max(x, axis=-1, keepdims=True)
    return z - anp.log(anp.sum(anp.exp(z), axis=-1, keepdims=True))

def one_hot(index, n):
    """(batch,) integers -> (batch, n) float32 one-hot rows."""
    return np.eye(n, dtype=np.float32)[index]

def running_stats_add(stats, x):
    """Welford: fold x into the count, mean and m2 (sum of squared deviations) of the vectors seen."""
    stats["count"] += 1
    d = x - stats["mean"]
    stats["mean"] += d / stats["count"]
    stats["m2"] += d * (x - stats["mean"])

# -------------------- Networks and losses ------------------------------------------------------
def network_sizes(obs_dim, n_actions, hidden_size, hidden_layers, ensemble_size):
    """Layer sizes of each network, input to output."""
    hidden, predicted = [hidden_size] * hidden_layers, min(obs_dim, max(hidden_size // 4, 1))  # len(d)
    return {"transition": [obs_dim + n_actions, *hidden, ensemble_size * predicted],  # (s, one-hot a) -> d, K heads
            "efe": [obs_dim, *hidden, 2 * n_actions],  # s -> G_r(s, a), G_e(s, a) for each action a
            "policy": [obs_dim, *hidden, n_actions],  # s -> logits of q(a|s)
            "efe2": [obs_dim, *hidden, 2 * n_actions]}  # the EFE pair's second net
EFE_NETS = ("efe", "efe2")  # the networks that have a target copy
EPISTEMIC_GAMMA = 0.9  # the discount of G_e, future information gain: a horizon of ~10 steps

def param_views(theta, sizes):
    """{network: [(W, b), ...]}, all views into one flat vector theta, so one Adam step updates every network."""
    params, i = {}, 0
    for name, layer_sizes in sizes.items():
        params[name] = []
        for m, n in zip(layer_sizes[:-1], layer_sizes[1:]):
            params[name].append((theta[i : i + m * n].reshape(m, n), theta[i + m * n : i + m * n + n]))
            i += m * n + n
    return params

def init_params(rng, sizes):
    """He-normal weights, zero biases."""
    theta = np.zeros(sum(m * n + n for s in sizes.values() for m, n in zip(s[:-1], s[1:])), dtype=np.float32)
    params = param_views(theta, sizes)
    for W, _ in (layer for layers in params.values() for layer in layers):
        W[...] = rng.normal(0.0, np.sqrt(2.0 / W.shape[0]), W.shape)
    return theta, params

def mlp_inputs(layers, x):
    """Forward pass: each layer's input [x, h1, h2, ...], and the output (batch, out)."""
    inputs = [x]
    for W, b in layers[:-1]:
        inputs.append(np.maximum(inputs[-1] @ W + b, 0.0))  # ReLU hidden layer
    W, b = layers[-1]
    return inputs, inputs[-1] @ W + b

@primitive
def mlp(layers, x):
    """(batch, in) -> (batch, out), ReLU hidden layers; backward by hand (mlp_vjp), faster than autograd's."""
    return mlp_inputs(layers, x)[1]

def mlp_vjp(out, layers, x):
    inputs, _ = mlp_inputs(layers, x)
    def vjp(g):  # g: dL/d(out), (batch, out)
        g = g.astype(x.dtype)  # autograd hands back float64; mixed-precision matmuls are slow
        grads = []
        for (W, b), h in zip(reversed(layers), reversed(inputs)):
            grads.append((h.T @ g, g.sum(axis=0)))  # dL/dW (in, out), dL/db (out,)
            g = (g @ W.T) * (h > 0)  # back through the ReLU that produced h
        return grads[::-1]
    return vjp

defvjp(mlp, mlp_vjp)

def transition_target(s, s_next, delta_stats, projection, raw):
    """d = ((s' - s - mu) / sigma) R, mu the running mean of s' - s and sigma^2 the sum of its running variances
    (E|d|^2 = 1 on any scale; raw: (s' - s) R). R: identity, or for observations longer than hidden_size / 4
    a fixed random projection to that length, which the heads can fit (a one-hot change is too long).  (batch, len(d))"""
    delta = s_next - s
    if raw:
        return delta @ projection
    sigma = max(np.sqrt(np.sum(delta_stats["m2"]) / max(delta_stats["count"], 1)), 1e-6)
    return ((delta - delta_stats["mean"]) / sigma @ projection).astype(np.float32)

def ensemble_predictions(layers, prior, s, a_onehot):
    """f_k(s, a) = g_k(s, a) + p_k(s, a): K heads of one trained net g, each plus a fixed random prior p_k from a net a
    quarter as wide, so that they disagree where they have no data and can agree where they have.  (batch, K, len(d))"""
    x = anp.concatenate([s, a_onehot], axis=1)  # (batch, obs_dim + n_actions)
    f = mlp(layers, x) + mlp(prior["layers"], x)  # (batch, K * len(d))
    return anp.reshape(f, (x.shape[0], -1, prior["projection"].shape[1]))

def scale_prior(prior, s, a_onehot):
    """Scale the prior's output in place so that 1/2 sum_d Var_k p_k,d averages 1/2 over (s, a): as unsure as E|d|^2/2."""
    x = np.concatenate([s, a_onehot], axis=1)
    p = mlp(prior["layers"], x).reshape(len(x), -1, prior["projection"].shape[1])  # (batch, K, len(d))
    spread = np.mean(0.5 * np.sum(np.var(p, axis=1), axis=1))
    prior["layers"][-1][0][...] *= np.sqrt(0.5 / max(spread, 1e-12))  # W; its bias is 0

def prediction_error(layers, prior, s, a_onehot, d):
    """eps_k(s, a, s') = 1/2 |d - f_k(s, a)|^2, each head's surprise: a unit Gaussian's -log-likelihood.  (batch, K)"""
    return 0.5 * anp.sum((d[:, None, :] - ensemble_predictions(layers, prior, s, a_onehot)) ** 2, axis=2)

def transition_loss(layers, prior, s, a_onehot, d, mask):
    """L_T = mean eps_k over the (transition, head) pairs whose mask is 1: each head fits its own data.  mask: (batch, K)"""
    return anp.sum(mask * prediction_error(layers, prior, s, a_onehot, d)) / np.sum(mask)

def information_gain(layers, prior, s, n_actions):
    """e(s, a) = 1/2 sum_d Var_k f_k,d(s, a) for every a. For K equally likely heads and noise s2, the information gain
    I(s'; k) <= 1/2 sum_d log(1 + Var_k f_k,d / s2) ~ e / s2: ~0 where the heads have data, noisy or not.  (batch, n_actions)"""
    s_each = np.repeat(s, n_actions, axis=0)  # (batch * n_actions, obs_dim): each state once per action
    a_each = np.tile(np.eye(n_actions, dtype=np.float32), (len(s), 1))  # (batch * n_actions, n_actions)
    f = ensemble_predictions(layers, prior, s_each, a_each)  # (batch * n_actions, K, len(d))
    return 0.5 * np.sum(np.var(f, axis=1), axis=1).reshape(len(s), n_actions)

def efe_values(layers, s, n_actions):
    """(G_r(s, .), G_e(s, .)): the EFE of what follows a, from reward and from information gain.  (batch, 2, n_actions)"""
    g = mlp(layers, s)  # (batch, 2 * n_actions)
    g = anp.concatenate([g[:, :n_actions], -anp.logaddexp(0.0, g[:, n_actions:])], axis=1)  # G_e = -softplus <= 0
    return anp.reshape(g, (g.shape[0], 2, n_actions))

def pair_efe(nets, s, n_actions):
    """max(G1, G2) on G_r, pessimistic as SAC's clipped double Q; (G1 + G2) / 2 on G_e.  (batch, 2, n_actions)"""
    g1, g2 = efe_values(nets["efe"], s, n_actions), efe_values(nets["efe2"], s, n_actions)
    return np.stack([np.maximum(g1[:, 0], g2[:, 0]), (g1[:, 1] + g2[:, 1]) / 2], axis=1)

def bootstrap_value(g_next, logits_next):
    """V(s') = sum_a' q(a'|s') G(s', a'), the EFE of following q from s', for each of G's last-axis rows."""
    q = np.exp(log_softmax(logits_next))  # (batch, n_actions)
    return np.sum(q[:, None, :] * g_next, axis=-1) if g_next.ndim == 3 else np.sum(q * g_next, axis=1)

def efe_targets(r, e_next, terminated, v_next, gamma, gamma_e):
    """y_r = -r + gamma (1 - terminated) V_r(s'), y_e = gamma_e (1 - terminated) (V_e(s') - E_q e(s', .)).
    A truncated (time-limit) s' still has a future.  e_next: (batch,) E_q e(s', .); v_next: (batch, 2)"""
    return np.stack([-r + gamma * (1 - terminated) * v_next[:, 0], gamma_e * (1 - terminated) * (v_next[:, 1] - e_next)], 1)

def efe_loss(layers, s, a_onehot, y):
    """L_G = mean sum_k (G_k(s, a) - y_k)^2 over both heads, with y a constant.  y: (batch, 2)"""
    g_taken = anp.sum(efe_values(layers, s, a_onehot.shape[1]) * a_onehot[:, None, :], axis=2)  # (batch, 2)
    return anp.mean(anp.sum((g_taken - y) ** 2, axis=1))

def policy_loss(layers, s, g, beta):
    """L_q = mean KL[q(.|s) || softmax(-beta G(s, .))] = sum_a q (log q + beta G) + log Z(s), exact over
    the actions, G a constant (batch, n_actions). Its gradient is the policy gradient of E_q[-beta G] + H[q]."""
    logq = log_softmax(mlp(layers, s))  # (batch, n_actions)
    logp = log_softmax(-beta * g)  # (batch, n_actions), constant
    return anp.mean(anp.sum(anp.exp(logq) * (logq - logp), axis=1))

transition_loss_and_grad = value_and_grad(transition_loss)
efe_loss_and_grad = value_and_grad(efe_loss)
policy_loss_and_grad = value_and_grad(policy_loss)

def precision_gradient(batch_entropy, target_entropy):
    """d/d(log alpha) of log(alpha) (H[q] - H_target), alpha = 1/beta: too random a policy raises beta."""
    return np.float32(np.mean(batch_entropy) - target_entropy)

def polyak(target, online, tau):
    """Gbar <- (1 - tau) Gbar + tau G, in place, for the (W, b) arrays of each layer."""
    for layer_target, layer in zip(target, online):
        for x_target, x in zip(layer_target, layer):
            x_target += tau * (x - x_target)

# -------------------- Optimiser ----------------------------------------------------------------
def adam_init(x):
    return {"m": np.zeros_like(x), "v": np.zeros_like(x), "t": 0}

def adam_step(x, grad, state, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step on x in place: m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    x <- x - lr_t m / (sqrt(v) + eps), lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) undoing m's and v's zero start."""
    state["t"] += 1
    m, v = state["m"], state["v"]
    m[...] = b1 * m + (1 - b1) * grad
    v[...] = b2 * v + (1 - b2) * grad * grad
    x -= lr * np.sqrt(1 - b2 ** state["t"]) / (1 - b1 ** state["t"]) * m / (np.sqrt(v) + eps)

# -------------------- Replay buffer ------------------------------------------------------------
def buffer_init(capacity, obs_dim, rng, ensemble_size):
    """A ring buffer of (s, a, r, s', terminated), the running statistics of every s' - s added, and for each slot
    a fixed random mask of the heads that learn from it: each head its own half of the data (a bootstrap)."""
    return {"s": np.zeros((capacity, obs_dim), np.float32), "a": np.zeros(capacity, np.int64),
            "r": np.zeros(capacity, np.float32), "s_next": np.zeros((capacity, obs_dim), np.float32),
            "terminated": np.zeros(capacity, np.float32), "index": 0, "size": 0,
            "mask": (rng.random((capacity, ensemble_size)) < 0.5).astype(np.float32),
            "delta_stats": {"count": 0, "mean": np.zeros(obs_dim), "m2": np.zeros(obs_dim)}}

def buffer_add(buf, s, a, r, s_next, terminated):
    i, capacity = buf["index"], len(buf["a"])
    buf["s"][i], buf["a"][i], buf["r"][i], buf["s_next"][i], buf["terminated"][i] = s, a, r, s_next, terminated
    buf["index"], buf["size"] = (i + 1) % capacity, min(buf["size"] + 1, capacity)
    running_stats_add(buf["delta_stats"], s_next - s)

def buffer_sample(buf, rng, batch_size):
    i = rng.integers(0, buf["size"], size=batch_size)
    return {key: buf[key][i] for key in ("s", "a", "r", "s_next", "terminated", "mask")}

# -------------------- Acting -------------------------------------------------------------------
def parse_env_kwargs(text):
    """The env_kwargs JSON object as a dict ("" -> {})."""
    try:
        kwargs = json.loads(text) if text else {}
    except json.JSONDecodeError as e:
        raise UsageError(f"env_kwargs is not valid JSON ({e}): {text}") from None
    if not isinstance(kwargs, dict):
        raise UsageError(f"env_kwargs must be a JSON object such as '{{\"is_slippery\": false}}', not {text}")
    return kwargs

def make_env(env_id, env_kwargs=""):
    """gymnasium.make(env_id, **env_kwargs), refusing what dai.py does not support; 1,000 steps at most."""
    try:
        env = gym.make(env_id, **parse_env_kwargs(env_kwargs))
    except Exception as e:  # unknown id, missing dependency, a keyword the env rejects...
        given = f" with env_kwargs {env_kwargs}" if env_kwargs else ""
        raise UsageError(f"cannot make environment {env_id!r}{given}: {type(e).__name__}: {e}") from None
    env = env if env.spec and env.spec.max_episode_steps else gym.wrappers.TimeLimit(env, 1_000)
    obs, acts = env.observation_space, env.action_space
    if not (isinstance(acts, gym.spaces.Discrete) and (isinstance(obs, gym.spaces.Discrete)
                                                       or (isinstance(obs, gym.spaces.Box) and len(obs.shape) == 1))):
        env.close()
        raise UsageError(f"{env_id} has action space {acts} and observation space {obs}; dai.py supports Discrete "
                         "action spaces with flat (1-D) Box or Discrete observation spaces only")
    return env

def encode(obs, space):
    """An observation as a float32 vector: a Box as it is, a Discrete one as one-hot."""
    return one_hot(int(obs) - int(space.start), int(space.n)) if isinstance(space, gym.spaces.Discrete) else np.asarray(obs, np.float32)

def act(policy_layers, s, rng=None):
    """Sample a ~ q(.|s), or take the mode of q when rng is None. Returns an action index."""
    logits = mlp(policy_layers, s[None])[0]  # (n_actions,)
    if rng is None:
        return int(np.argmax(logits))
    cdf = np.cumsum(np.exp(log_softmax(logits)))
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1]), len(cdf) - 1))

# -------------------- Training loop ------------------------------------------------------------
class StopTraining(Exception): """StopTraining(message, exit code): on Ctrl-C (130) or a non-finite value (1)."""

def sizes_of(env, cfg):
    """network_sizes() for this env and config; a Discrete(m) observation is one-hot, of length m."""
    obs_dim = env.observation_space.n if isinstance(env.observation_space, gym.spaces.Discrete) else env.observation_space.shape[0]
    return network_sizes(int(obs_dim), int(env.action_space.n), cfg.hidden_size, cfg.hidden_layers, cfg.ensemble_size)

def prior_sizes(transition_sizes):
    """The layer sizes of the heads' prior: the transition net's, its hidden layers a quarter as wide."""
    return [transition_sizes[0], *[max(n // 4, 1) for n in transition_sizes[1:-1]], transition_sizes[-1]]

def prior_of(state, sizes):
    """The fixed random parts of the transition model: the heads' prior net and the projection R of d."""
    return {"layers": param_views(state["prior_theta"], {"p": prior_sizes(sizes["transition"])})["p"],
            "projection": state["projection"]}

def init_state(rng, sizes, precision, ensemble_size):
    """Parameters, the transition model's fixed random parts, target nets, log(1/beta), Adam moments."""
    theta, params = init_params(rng, sizes)
    params["policy"][-1][0][...] *= 0.01  # q starts near uniform
    prior_theta, _ = init_params(rng, {"p": prior_sizes(sizes["transition"])})
    obs_dim, predicted = sizes["efe"][0], sizes["transition"][-1] // ensemble_size
    projection = np.eye(obs_dim) if predicted == obs_dim else rng.normal(0, 1 / np.sqrt(predicted), (obs_dim, predicted))
    log_alpha = np.array([-np.log(precision)], dtype=np.float32)  # alpha = 1/beta
    target_theta = np.concatenate([x.ravel() for net in EFE_NETS for layer in params[net] for x in layer])  # copies
    return {"theta": theta, "prior_theta": prior_theta, "projection": projection.astype(np.float32),
            "target_theta": target_theta, "log_alpha": log_alpha, "adam_theta": adam_init(theta), "adam_log_alpha": adam_init(log_alpha)}

def precision_of(state):
    return float(np.exp(-state["log_alpha"][0]))  # beta = 1/alpha

def update(params, prior, target, state, batch, delta_stats, cfg):
    """One minibatch update of f, the EFE pair, q and beta; y and G in L_q are constant arrays; one Adam step on theta."""
    s, s_next, r, terminated = batch["s"], batch["s_next"], batch["r"], batch["terminated"]
    n_actions, lam = len(params["policy"][-1][1]), cfg.epistemic_weight
    a_onehot = one_hot(batch["a"], n_actions)  # (batch, n_actions)
    d = transition_target(s, s_next, delta_stats, prior["projection"], cfg.raw_epistemic)  # (batch, len(d))
    e = e_next = np.zeros((len(s), n_actions), np.float32)  # the information gain at s and s', per action
    if cfg.raw_epistemic:  # the paper's: the surprise at the observed outcome, paid as reward
        bonus = lam * np.mean(prediction_error(params["transition"], prior, s, a_onehot, d), axis=1)  # (batch,)
        r = r + bonus
    elif lam > 0:
        e, e_next = np.split(information_gain(params["transition"], prior, np.concatenate([s, s_next]), n_actions), 2)
        bonus = lam * np.sum(e * a_onehot, axis=1)  # (batch,) what the taken actions were worth
    logits_next = mlp(params["policy"], s_next)  # (batch, n_actions)
    v_next = bootstrap_value(pair_efe(target, s_next, n_actions), logits_next)  # (batch, 2)
    y = efe_targets(r, bootstrap_value(e_next, logits_next), terminated, v_next, cfg.gamma, EPISTEMIC_GAMMA)
    g = np.sum(pair_efe(params, s, n_actions) * np.float32([[1], [lam]]), axis=1) - lam * e  # G_r + lambda (G_e - e): q's target
    loss_t, grad_t = transition_loss_and_grad(params["transition"], prior, s, a_onehot, d, batch["mask"])
    (loss_g, grad_g), (_, grad_g2) = (efe_loss_and_grad(params[net], s, a_onehot, y) for net in EFE_NETS)
    loss_q, grad_q = policy_loss_and_grad(params["policy"], s, g, precision_of(state))
    grads = {"transition": grad_t, "efe": grad_g, "policy": grad_q, "efe2": grad_g2}
    flat_grad = np.concatenate([x.ravel() for net in params for W_b in grads[net] for x in W_b])  # theta's order
    adam_step(state["theta"], flat_grad, state["adam_theta"], cfg.learning_rate)
    logq_next = log_softmax(logits_next)
    h = -np.sum(np.exp(logq_next) * logq_next, axis=1)  # (batch,) H[q] at the replayed s'
    if cfg.precision_learning_rate:
        grad_log_alpha = precision_gradient(h, cfg.target_entropy * np.log(n_actions))
        adam_step(state["log_alpha"], grad_log_alpha, state["adam_log_alpha"], cfg.precision_learning_rate)
    return {"transition_loss": float(loss_t), "efe_loss": float(loss_g), "policy_loss": float(loss_q),
            "entropy": float(np.mean(h)), "epistemic_bonus": float(np.mean(bonus)) if lam else 0.0,
            "precision": precision_of(state)}

UPDATE_METRICS = ("transition_loss", "efe_loss", "policy_loss", "entropy", "epistemic_bonus")
HISTORY = ("episode_step", "episode_return", "episode_length", "eval_step", "eval_return", "eval_train_seconds",
           *UPDATE_METRICS, "precision", "steps_per_second")

def train(cfg, progress=print, checkpoint=None):
    """Train on cfg.env_id, or resume `checkpoint`; returns (params, history), lists named by HISTORY per episode
    (episode_*) and per evaluation; `progress` gets each line (None: silent). Raises UsageError, StopTraining."""
    check_config(cfg)
    if cfg.save and not os.path.isdir(os.path.dirname(os.path.abspath(cfg.save))):
        raise UsageError(f"--save {cfg.save}: the folder does not exist")
    if cfg.save and os.path.exists(cfg.save) and not (cfg.load and os.path.samefile(cfg.save, cfg.load)):
        raise UsageError(f"--save {cfg.save} already exists; choose another path, or resume from it with --load {cfg.save}")
    progress, where = progress or (lambda line: None), f" | saved {cfg.save}" if cfg.save else ""
    env = make_env(cfg.env_id, cfg.env_kwargs)
    sizes = sizes_of(env, cfg)
    if checkpoint is None:  # seeding: one generator for the weights, actions and minibatches
        rng = np.random.default_rng(cfg.seed)
        state, buf, start = init_state(rng, sizes, cfg.precision, cfg.ensemble_size), buffer_init(cfg.buffer_size, sizes["efe"][0], rng, cfg.ensemble_size), 0
    else:
        state, buf, rng, start = restore(checkpoint, cfg, sizes)
        if start >= cfg.total_steps:
            raise UsageError(f"the checkpoint is at step {start}; pass --total-steps above it to train on, or --eval-only")
    params, target = param_views(state["theta"], sizes), param_views(state["target_theta"], {n: sizes[n] for n in EFE_NETS})
    prior = prior_of(state, sizes)
    obs, _ = env.reset(seed=cfg.seed + start)  # the env once (offset by the steps done when resuming)
    env.action_space.seed(cfg.seed + start)
    history, running = {key: [] for key in HISTORY}, dict.fromkeys(UPDATE_METRICS, float("nan"))
    s, ep_return, ep_length, done_steps = encode(obs, env.observation_space), 0.0, 0, start
    clock, eval_seconds, last_line = time.perf_counter(), 0.0, (start, 0.0)  # eval_seconds: time spent evaluating
    record = lambda **values: [history[key].append(value) for key, value in values.items()]
    try:
        for step in range(start + 1, cfg.total_steps + 1):
            a = act(params["policy"], s, rng)
            obs, r, terminated, truncated, _ = env.step(int(a) + int(env.action_space.start))  # a Python int
            s_next = encode(obs, env.observation_space)
            buffer_add(buf, s, a, r, s_next, terminated)  # a truncated s' has a future: not terminal
            s, ep_return, ep_length, done_steps = s_next, ep_return + float(r), ep_length + 1, step
            if terminated or truncated:
                record(episode_step=step, episode_return=ep_return, episode_length=ep_length)
                s, ep_return, ep_length = encode(env.reset()[0], env.observation_space), 0.0, 0
            if step >= cfg.learning_starts and step % cfg.train_every == 0:
                batch = buffer_sample(buf, rng, cfg.batch_size)
                if state["adam_theta"]["t"] == 0:  # the first update
                    scale_prior(prior, batch["s"], one_hot(batch["a"], sizes["policy"][-1]))
                metrics = update(params, prior, target, state, batch, buf["delta_stats"], cfg)
                for name in (name for name, value in metrics.items() if not np.isfinite(value)):
                    kept = f"; {cfg.save} keeps the last good checkpoint" if os.path.exists(cfg.save) else ""
                    raise StopTraining(f"{name} became {metrics[name]} at step {step}; training stopped{kept}", 1)
                for key, old in running.items():  # exponential moving averages over ~100 updates
                    running[key] = metrics[key] if np.isnan(old) else old + 0.01 * (metrics[key] - old)
                for net in EFE_NETS:
                    polyak(target[net], params[net], cfg.tau)
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.total_steps:
                seconds = time.perf_counter() - clock - eval_seconds  # training time so far
                returns = evaluate(params, cfg.env_id, cfg.eval_episodes, cfg.seed + 10_000, cfg.env_kwargs)
                eval_seconds = time.perf_counter() - clock - seconds
                line = {"step": step, "episodes": len(history["episode_return"]),
                        "episode_return": np.mean(history["episode_return"][-20:] or np.nan),  # the last 20 episodes'
                        "eval_return": float(np.mean(returns)), **running, "precision": precision_of(state),
                        "steps_per_second": round((step - last_line[0]) / max(seconds - last_line[1], 1e-9))}
                record(eval_step=step, eval_train_seconds=seconds, **{key: line[key] for key in HISTORY[4:] if key in line})
                last_line = (step, seconds)
                progress(" | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in line.items()))
                if cfg.save:
                    save_checkpoint(cfg.save, cfg, step, sizes, state, buf, rng)
    except KeyboardInterrupt:
        if cfg.save:
            save_checkpoint(cfg.save, cfg, done_steps, sizes, state, buf, rng)
        raise StopTraining(f"interrupted at step {done_steps}" + (f"; checkpoint saved to {cfg.save}" if cfg.save else ""), 130) from None
    finally:
        env.close()
    progress(f"done: {cfg.env_id} seed {cfg.seed} | steps {cfg.total_steps} | final eval_return "
             f"{history['eval_return'][-1]:.1f} | train_seconds {history['eval_train_seconds'][-1]:.1f}" + where)
    return params, history

# -------------------- Checkpoints --------------------------------------------------------------
CHECKPOINT_VERSION = 7

def flatten(tree, prefix=""):
    """{"a": {"b": x}} -> {"a.b": np.asarray(x)}: nested dicts as the flat arrays of an .npz."""
    return {k: v for key, value in tree.items() for k, v in
            (flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: np.asarray(value)}).items()}

def checkpoint_arrays(cfg, step, sizes, state, buf, rng):
    """A checkpoint: format, hyperparameters, env, step, generator state, learner and buffer."""
    config = json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_OPTIONS})
    return flatten({"format_version": CHECKPOINT_VERSION, "config": config, "env_id": cfg.env_id, "step": step,
                    "rng_state": json.dumps(rng.bit_generator.state), "state": state, "buffer": buf})

def save_checkpoint(path, cfg, step, sizes, state, buf, rng):
    """checkpoint_arrays() as an .npz, written beside `path` and renamed over it: atomic."""
    if not np.all(np.isfinite(state["theta"])):
        raise StopTraining(f"parameters are not finite at step {step}; {path} not overwritten", 1)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".dai-", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **checkpoint_arrays(cfg, step, sizes, state, buf, rng))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise

def read_checkpoint(path):
    """(arrays, config dict) of a checkpoint, or one UsageError; allow_pickle=False, so it runs no code."""
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            ckpt = {key: data[key] for key in data.files}
    except Exception as e:  # anything a damaged file can raise while being parsed
        raise UsageError(f"{path} is not a readable checkpoint (truncated or not an .npz file: {e})") from None
    types = {f.name: (f.type, int if f.type is float else f.type) for f in dataclasses.fields(Config) if f.name not in RUN_OPTIONS}
    try:  # this format, and its config a JSON object of every hyperparameter with its field's type (an int for a float)
        version, config = ckpt.get("format_version"), json.loads(str(ckpt.get("config")))
        if (version.dtype.kind not in "iu" or version.shape or version != CHECKPOINT_VERSION
                or config.keys() != types.keys() or not all(type(config[k]) in types[k] for k in types)):
            raise ValueError
    except (ValueError, AttributeError):
        raise UsageError(f"{path} is not a dai.py checkpoint of format {CHECKPOINT_VERSION} with these fields") from None
    return ckpt, config

def restore(ckpt, cfg, sizes):
    """(state, buffer, rng, step) of a checkpoint whose arrays match a fresh agent's in name, dtype kind and shape."""
    capacity, n_actions, rng = cfg.buffer_size, sizes["policy"][-1], np.random.default_rng()
    state, buf = init_state(rng, sizes, 1.0, cfg.ensemble_size), buffer_init(capacity, sizes["efe"][0], rng, cfg.ensemble_size)
    fresh = checkpoint_arrays(cfg, 0, sizes, state, buf, rng)
    wrong = [k for k, v in fresh.items() if k not in ckpt or (ckpt[k].shape, ckpt[k].dtype.kind) != (v.shape, v.dtype.kind)]
    def fill(tree, prefix):  # the fresh agent's dicts, filled with the checkpoint's arrays
        return {k: fill(v, f"{prefix}{k}.") if isinstance(v, dict) else ckpt[prefix + k][()] for k, v in tree.items()}
    if not wrong:
        state, buf, step = fill(state, "state."), fill(buf, "buffer."), int(ckpt["step"])
        in_range = {"step": step >= 0, "buffer.index": 0 <= buf["index"] < capacity,
                    "buffer.size": 0 <= buf["size"] <= capacity, "buffer.a": np.all((0 <= buf["a"]) & (buf["a"] < n_actions)),
                    "buffer.mask": np.all((buf["mask"] == 0) | (buf["mask"] == 1)),
                    "buffer.delta_stats": np.all(buf["delta_stats"]["m2"] >= 0),
                    **{f"state.{k}": np.all(np.isfinite(state[k])) for k in ("theta", "prior_theta", "projection", "target_theta", "log_alpha")},
                    **{f"state.{k}": np.all(state[k]["v"] >= 0) for k in ("adam_theta", "adam_log_alpha")}}
        wrong = [k for k, ok in in_range.items() if not ok]
        try:
            rng.bit_generator.state = json.loads(str(ckpt["rng_state"]))
        except (ValueError, TypeError, KeyError):
            wrong.append("rng_state")
    if wrong:
        made_for = f"made for {ckpt['env_id']}" if ckpt.get("env_id", np.zeros(1)).shape == () else "damaged"
        raise UsageError(f"checkpoint ({made_for}) does not fit {cfg.env_id} with these flags: {', '.join(wrong[:5])} "
                         "not as needed; load it with its env_id, hidden_size, hidden_layers, ensemble_size, buffer_size")
    return state, buf, rng, step

# -------------------- Evaluation ---------------------------------------------------------------
def evaluate(params, env_id, episodes, seed, env_kwargs=""):
    """Returns of `episodes` episodes acting with the mode of q, on a fresh env seeded `seed`."""
    with make_env(env_id, env_kwargs) as env:
        returns, (obs, _) = [], env.reset(seed=seed)
        for _ in range(episodes):
            total, done = 0.0, False
            while not done:
                a = act(params["policy"], encode(obs, env.observation_space))
                obs, r, terminated, truncated, _ = env.step(int(a) + int(env.action_space.start))
                total, done = total + float(r), terminated or truncated
            returns.append(total)
            obs, _ = env.reset()
    return returns

# -------------------- Command line -------------------------------------------------------------
def build_parser():
    """A flag per Config field, its help the field's comment; given flags only (they override a checkpoint's)."""
    helps = {code.split(":")[0].strip(): note.strip() for code, _, note in
             (line.partition("#") for line in inspect.getsource(Config).splitlines()) if note}
    parser = argparse.ArgumentParser(prog="dai.py", argument_default=argparse.SUPPRESS,
                                     formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=36, width=110),
                                     description="Deep active inference (Millidge 2019) on a Gymnasium environment.")
    parser.add_argument("env_id", help=helps.get("env_id"))
    for field in dataclasses.fields(Config)[1:]:
        kind = {"action": argparse.BooleanOptionalAction} if field.type is bool else {"type": field.type,
                                                                                     "metavar": field.type.__name__.upper()}
        text = f"{helps.get(field.name, '')} (default: {field.default!r})"
        parser.add_argument("--" + field.name.replace("_", "-"), **kind, help=text)
    return parser

def main(argv=None):
    """Exit codes: 0 done, 1 a non-finite value, 2 bad input, 130 Ctrl-C, 141 output pipe closed."""
    try:
        given = vars(build_parser().parse_args(argv))
        checkpoint, saved = read_checkpoint(given["load"]) if given.get("load") else (None, {})
        cfg = Config(**{**saved, **given})
        if not cfg.eval_only:
            train(cfg, checkpoint=checkpoint)
        elif checkpoint is None:
            raise UsageError("--eval-only needs a checkpoint: --load PATH")
        else:
            check_config(cfg)
            with make_env(cfg.env_id, cfg.env_kwargs) as env:
                sizes = sizes_of(env, cfg)
            params = param_views(restore(checkpoint, cfg, sizes)[0]["theta"], sizes)
            returns = evaluate(params, cfg.env_id, cfg.eval_episodes, cfg.seed + 10_000, cfg.env_kwargs)
            print(f"eval_return mean {np.mean(returns):.2f} std {np.std(returns):.2f} over {len(returns)} episodes")
    except SystemExit as e:  # argparse has printed --help, or its usage line and the error
        return e.code
    except UsageError as e:
        print(f"dai.py: error: {e}", file=sys.stderr)
        return 2
    except StopTraining as e:
        print(f"dai.py: {e.args[0]}", file=sys.stderr)
        return e.args[1]
    except BrokenPipeError:  # stdout was closed by a reader such as `| head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit flush cannot fail
        return 141
    return 0

if __name__ == "__main__":
    sys.exit(main())
