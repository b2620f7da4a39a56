"""Deep active inference as variational policy gradients (Millidge 2019), in one file.

    python dai.py CartPole-v1    # train with the defaults (17.5k steps); --help: every flag

The agent minimises G, the expected free energy (EFE) of the future: -r (reward is log preference)
less e, what the outcome would teach its transition model (the paper's sign). "added" marks what is
not in the paper, with why where it is defined; PAPER_AGENT's flags give the paper's own agent.

  the change        d = ((s' - s - mu) / sigma) R         added; paper: s' - s   transition_target
  K heads           f_k(s, a) = g_k(s, a) + p_k(s, a)     added; paper: one     ensemble_predictions
  transition loss   L_T = mean 1/2 |d - f_k(s, a)|^2      paper                  transition_loss
  epistemic term    e(s, a) = 1/2 sum_d log(1 + Var_k f_k,d)  added              information_gain
                    raw: eps = 1/2 |d - f(s, a)|^2        paper, paid as reward  prediction_error
  EFE heads         G_r(s, .) from r, G_e(s, .) from e    added; paper: one G    efe_values
  EFE pair          max(G1_r, G2_r), (G1_e + G2_e) / 2    added; paper: one net  pair_efe
  targets           y_r = -r + gamma (1 - terminated) E_q(a'|s') Gbar_r(s', a')  paper  efe_targets
                    y_e = gamma_e (1 - terminated) E_q(a'|s') [Gbar_e - e](s', a')  added
  EFE loss          L_G = mean sum_k (G_k(s, a) - y_k)^2   paper                  efe_loss
  policy loss       L_q = KL[q(.|s) || softmax(-beta (G_r + lambda (G_e - e)))]  paper  policy_loss
  precision         log alpha = -log beta descends (H[q(.|s')] - H_target) log alpha  added  update
  target nets       Gbar <- (1 - tau) Gbar + tau G        added; paper: copies   polyak
"""

import argparse
import csv
import dataclasses
import inspect
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads: one BLAS thread, fastest
import autograd.numpy as anp  # inside every function that autograd differentiates
import gymnasium as gym
from gymnasium.spaces import Discrete
import numpy as np  # everywhere else
from autograd import value_and_grad
from autograd.extend import defvjp, primitive

# -------------------- Config -------------------------------------------------------------------
@dataclasses.dataclass
class Config:
    """Every hyperparameter. Each field is a command-line flag of the same name in kebab case."""
    env_id: str = "CartPole-v1"  # Gymnasium id: Discrete actions, flat Box or Discrete observations
    seed: int = 0  # seeds the env, its action space and the one NumPy generator for the rest
    total_steps: int = 17_500  # env steps to train for; resuming: the total, done steps included
    hidden_size: int = 128  # ReLU units in each hidden layer of every network
    hidden_layers: int = 2  # hidden layers in each network
    learning_rate: float = 2e-3  # Adam step size for the networks
    batch_size: int = 256  # transitions per minibatch update
    buffer_size: int = 100_000  # replay buffer capacity (the oldest transitions are overwritten)
    learning_starts: int = 1_000  # env steps before the first update (q starts near uniform)
    train_every: int = 2  # env steps between minibatch updates
    gamma: float = 0.995  # discount of future expected free energy, in [0, 1)
    tau: float = 0.04  # Polyak rate of the target EFE nets, in (0, 1]; 1: a copy every update
    efe_nets: int = 2  # 2: the pessimistic EFE pair; 1: one EFE net, as in the paper
    ensemble_size: int = 5  # K >= 2 transition heads, whose disagreement is e (raw: 1 allowed)
    epistemic_weight: float = 10.0  # lambda, the weight of e in G, >= 0 (0: reward alone)
    raw_epistemic: bool = False  # the paper's term: lambda x prediction error eps, paid as reward
    precision: float = 1.0  # beta: the fixed precision, or its starting value when learned
    target_entropy: float = 0.3  # the entropy beta holds, x log(n_actions), in (0, 1)
    precision_learning_rate: float = 6e-4  # Adam step size of log(1/beta), >= 0; 0: beta fixed
    eval_every: int = 2_500  # env steps between evaluations (progress lines); 0: only at the end
    eval_episodes: int = 20  # episodes per evaluation (mode of q, an env seeded seed + 10000)
    env_kwargs: str = ""  # JSON keyword arguments for gymnasium.make, e.g. '{"is_slippery": false}'
    save: str = ""  # checkpoint file (.npz), written at every evaluation and on Ctrl-C
    load: str = ""  # checkpoint to resume (its config, then the flags given); if done, evaluate it
    log: str = ""  # CSV file of the progress lines, a row each, with HISTORY's names
RUN_OPTIONS = ("save", "load", "log")  # not hyperparameters: not stored in a checkpoint

class UsageError(Exception):
    """Bad input (a flag, an environment, a checkpoint): one line, exit code 2."""

def check_config(cfg):
    """Refuse nonsense hyperparameters with a one-line reason (NaN fails every range)."""
    counts = ("total_steps", "hidden_size", "hidden_layers", "batch_size", "train_every",
              "eval_episodes")
    rules = [(getattr(cfg, name) >= 1, f"{name} must be at least 1") for name in counts] + [
        (cfg.buffer_size >= cfg.batch_size, "buffer_size must be at least batch_size"),
        (min(cfg.learning_starts, cfg.eval_every) >= 0, "learning_starts, eval_every must be >= 0"),
        (cfg.learning_rate > 0, "learning_rate must be > 0"),
        (cfg.precision_learning_rate >= 0, "precision_learning_rate must be >= 0"),
        (0 <= cfg.gamma < 1, "gamma must be in [0, 1)"),
        (0 < cfg.tau <= 1, "tau must be in (0, 1]"),
        (cfg.efe_nets in (1, 2), "efe_nets must be 1 or 2"),
        (0 <= cfg.epistemic_weight < np.inf, "epistemic_weight must be >= 0"),
        (cfg.ensemble_size >= 2 - cfg.raw_epistemic, "ensemble_size must be at least 2 (raw: 1)"),
        (0 < cfg.precision < np.inf, "precision must be > 0"),
        (0 < cfg.target_entropy < 1, "target_entropy must be in (0, 1)")]
    for ok, message in rules:
        if not ok:
            raise UsageError(message)

# -------------------- Maths helpers ------------------------------------------------------------
def log_softmax(x):
    """log softmax over the last axis, x - logsumexp(x), stable for large |x|."""
    z = x - anp.max(x, axis=-1, keepdims=True)
    return z - anp.log(anp.sum(anp.exp(z), axis=-1, keepdims=True))

def one_hot(index, n):
    """(batch,) integers -> (batch, n) float32 one-hot rows."""
    return np.eye(n, dtype=np.float32)[index]

def running_stats_add(stats, x):
    """Welford: fold x into the count, mean and m2 (the sum of squared deviations) of those seen."""
    stats["count"] += 1
    d = x - stats["mean"]
    stats["mean"] += d / stats["count"]
    stats["m2"] += d * (x - stats["mean"])

# -------------------- Networks and losses ------------------------------------------------------
EFE_NETS = ("efe", "efe2")  # the EFE pair, each net with a target copy; one EFE net: "efe"
EPISTEMIC_GAMMA = 0.9  # gamma_e, the discount of G_e: a horizon of ~10 steps

def network_sizes(obs_dim, n_actions, hidden_size, hidden_layers, ensemble_size, efe_nets=2):
    """Layer sizes of each network, input to output, in theta's order."""
    hidden = [hidden_size] * hidden_layers
    predicted = min(obs_dim, max(hidden_size // 4, 1))  # len(d)
    sizes = {"transition": [obs_dim + n_actions, *hidden, ensemble_size * predicted],  # K heads
             "efe": [obs_dim, *hidden, 2 * n_actions],  # s -> G_r(s, .), G_e(s, .)
             "policy": [obs_dim, *hidden, n_actions]}  # s -> logits of q(.|s)
    if efe_nets == 2:
        sizes["efe2"] = sizes["efe"]
    return sizes

def param_views(theta, sizes):
    """{network: [(W, b), ...]}, all views into one flat theta: one Adam step updates every net."""
    params, i = {}, 0
    for name, layer_sizes in sizes.items():
        params[name] = []
        for m, n in zip(layer_sizes[:-1], layer_sizes[1:]):
            W, i = theta[i : i + m * n].reshape(m, n), i + m * n
            params[name].append((W, theta[i : i + n]))
            i += n
    return params

def concat_layers(nets):
    """{network: [(W, b), ...]} as one flat vector, in the dict's order."""
    return np.concatenate([x.ravel() for layers in nets.values() for W_b in layers for x in W_b])

def init_params(rng, sizes):
    """He-normal weights, zero biases."""
    n_params = sum(m * n + n for s in sizes.values() for m, n in zip(s[:-1], s[1:]))
    theta = np.zeros(n_params, dtype=np.float32)
    params = param_views(theta, sizes)
    for layers in params.values():
        for W, _ in layers:
            W[...] = rng.normal(0.0, np.sqrt(2.0 / W.shape[0]), W.shape)
    return theta, params

def mlp_inputs(layers, x):
    """Forward pass: each layer's input [x, h1, h2, ...], and the output (batch, out)."""
    inputs = [x]
    for W, b in layers[:-1]:
        inputs.append(np.maximum(inputs[-1] @ W + b, 0.0))  # ReLU hidden layer
    return inputs, inputs[-1] @ layers[-1][0] + layers[-1][1]

mlp = primitive(lambda layers, x: mlp_inputs(layers, x)[1])  # (batch, out); backward: mlp_vjp

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
    """d (batch, len(d)), E|d|^2 = 1 on any scale (raw: (s' - s) R); R cuts long s to hidden / 4."""
    delta = s_next - s
    if raw:
        return delta @ projection
    sigma = max(np.sqrt(np.sum(delta_stats["m2"]) / max(delta_stats["count"], 1)), 1e-6)
    return ((delta - delta_stats["mean"]) / sigma @ projection).astype(np.float32)

def ensemble_predictions(layers, prior, s, a_onehot):
    """f_k (batch, K, len(d)): each head plus its fixed random prior, to disagree without data."""
    x = anp.concatenate([s, a_onehot], axis=1)  # (batch, obs_dim + n_actions)
    f = mlp(layers, x) + mlp(prior["layers"], x)  # (batch, K * len(d))
    return anp.reshape(f, (x.shape[0], -1, prior["projection"].shape[1]))

def scale_prior(prior, s, a_onehot):
    """Scale the prior in place: 1/2 sum_d Var_k p_k,d averages 1/2, the error of predicting the
    mean change, so e starts a little under it; K = 1: no prior."""
    x = np.concatenate([s, a_onehot], axis=1)
    p = mlp(prior["layers"], x).reshape(len(x), -1, prior["projection"].shape[1])  # (batch, K, d)
    spread = np.mean(0.5 * np.sum(np.var(p, axis=1), axis=1))  # 0 for one head
    prior["layers"][-1][0][...] *= np.sqrt(0.5 / spread) if spread > 0 else 0.0  # W; its bias is 0

def prediction_error(layers, prior, s, a_onehot, d):
    """eps_k(s, a, s') = 1/2 |d - f_k(s, a)|^2, each head's -log-likelihood of d.  (batch, K)"""
    f = ensemble_predictions(layers, prior, s, a_onehot)  # (batch, K, len(d))
    return 0.5 * anp.sum((d[:, None, :] - f) ** 2, axis=2)

def transition_loss(layers, prior, s, a_onehot, d, mask):
    """L_T = mean eps_k over the (transition, head) pairs whose mask (batch, K) is 1."""
    return anp.sum(mask * prediction_error(layers, prior, s, a_onehot, d)) / np.sum(mask)

def information_gain(layers, prior, s, n_actions):
    """e(s, a) for every a, (batch, n_actions): the bound on the information gain about which of K
    heads is right (unit noise); ~0 where they have data, a log where none can fit s' (a crash)."""
    s_each = np.repeat(s, n_actions, axis=0)  # (batch * n_actions, obs_dim): each s once per a
    a_each = np.tile(np.eye(n_actions, dtype=np.float32), (len(s), 1))  # one-hot a, as s_each
    f = ensemble_predictions(layers, prior, s_each, a_each)  # (batch * n_actions, K, len(d))
    return 0.5 * np.sum(np.log1p(np.var(f, axis=1)), axis=1).reshape(len(s), n_actions)

def efe_values(layers, s, n_actions):
    """(G_r(s, .), G_e(s, .)), the EFE from reward and from e. G_e is apart for its own discount,
    and -softplus <= 0 so that it stays near 0 where e has gone.  (batch, 2, n_actions)"""
    u = mlp(layers, s)  # (batch, 2 * n_actions)
    g = anp.concatenate([u[:, :n_actions], -anp.logaddexp(0.0, u[:, n_actions:])], axis=1)
    return anp.reshape(g, (g.shape[0], 2, n_actions))

def pair_efe(nets, s, n_actions):
    """max(G1_r, G2_r), pessimistic as SAC's clipped double Q, so that errors flattering an action
    do not feed on themselves, and (G1_e + G2_e) / 2; without "efe2", one net's G."""
    g1 = efe_values(nets["efe"], s, n_actions)  # (batch, 2, n_actions)
    if "efe2" not in nets:
        return g1
    g2 = efe_values(nets["efe2"], s, n_actions)
    return np.stack([np.maximum(g1[:, 0], g2[:, 0]), (g1[:, 1] + g2[:, 1]) / 2], axis=1)

def bootstrap_value(g_next, logits_next):
    """V(s') = sum_a' q(a'|s') G(s', a'), the EFE of following q from s', for each row of G."""
    q = np.exp(log_softmax(logits_next))  # (batch, n_actions)
    return np.sum(q[:, None, :] * g_next, axis=-1) if g_next.ndim == 3 else np.sum(q * g_next, 1)

def efe_targets(r, e_next, terminated, v_next, gamma, gamma_e):
    """(y_r, y_e), v_next = V(s') and e_next = E_q e(s', .); a truncated s' keeps its future."""
    y_r = -r + gamma * (1 - terminated) * v_next[:, 0]
    return np.stack([y_r, gamma_e * (1 - terminated) * (v_next[:, 1] - e_next)], 1)

def efe_loss(layers, s, a_onehot, y):
    """L_G = mean sum_k (G_k(s, a) - y_k)^2 over both heads, with y (batch, 2) a constant."""
    g = efe_values(layers, s, a_onehot.shape[1])  # (batch, 2, n_actions)
    g_taken = anp.sum(g * a_onehot[:, None, :], axis=2)  # (batch, 2)
    return anp.mean(anp.sum((g_taken - y) ** 2, axis=1))

def policy_loss(layers, s, g, beta):
    """L_q = mean sum_a q (log q + beta G) + log Z, G constant: the gradient of E_q[-beta G] + H[q],
    maximum-entropy RL with -G for Q (lambda = 0, one EFE net: discrete SAC on -G_r but without
    entropy in V(s'); with the pair: its clipped double Q; beta -> oo: greedy Q-learning)."""
    logq = log_softmax(mlp(layers, s))  # (batch, n_actions)
    logp = log_softmax(-beta * g)  # (batch, n_actions), constant
    return anp.mean(anp.sum(anp.exp(logq) * (logq - logp), axis=1))

def polyak(target, online, tau):
    """Gbar <- (1 - tau) Gbar + tau G in place: per-step updates want a smooth target (added)."""
    for layer_target, layer in zip(target, online):
        for x_target, x in zip(layer_target, layer):
            x_target += tau * (x - x_target)

# -------------------- Optimiser ----------------------------------------------------------------
def adam_init(x):
    return {"m": np.zeros_like(x), "v": np.zeros_like(x), "t": 0}

def adam_step(x, grad, state, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step on x in place, its moments m and v corrected for their zero start."""
    state["t"] += 1
    m, v = state["m"], state["v"]
    m[...] = b1 * m + (1 - b1) * grad
    v[...] = b2 * v + (1 - b2) * grad * grad
    x -= lr * np.sqrt(1 - b2 ** state["t"]) / (1 - b1 ** state["t"]) * m / (np.sqrt(v) + eps)

# -------------------- Replay buffer ------------------------------------------------------------
def buffer_init(capacity, obs_dim, rng, ensemble_size):
    """A ring buffer of (s, a, r, s', terminated), the running statistics of every s' - s added,
    and a fixed random mask per slot: each head learns from its own half of the data."""
    return {"s": np.zeros((capacity, obs_dim), np.float32), "a": np.zeros(capacity, np.int64),
            "r": np.zeros(capacity, np.float32), "terminated": np.zeros(capacity, np.float32),
            "s_next": np.zeros((capacity, obs_dim), np.float32), "index": 0, "size": 0,
            "mask": (rng.random((capacity, ensemble_size)) < 0.5).astype(np.float32),
            "delta_stats": {"count": 0, "mean": np.zeros(obs_dim), "m2": np.zeros(obs_dim)}}

def buffer_add(buf, s, a, r, s_next, terminated):
    i = buf["index"]
    for key, value in zip(("s", "a", "r", "s_next", "terminated"), (s, a, r, s_next, terminated)):
        buf[key][i] = value
    buf["index"], buf["size"] = (i + 1) % len(buf["a"]), min(buf["size"] + 1, len(buf["a"]))
    running_stats_add(buf["delta_stats"], s_next - s)

def buffer_sample(buf, rng, batch_size):
    i = rng.integers(0, buf["size"], size=batch_size)
    return {key: buf[key][i] for key in ("s", "a", "r", "s_next", "terminated", "mask")}

# -------------------- Acting -------------------------------------------------------------------
def make_env(env_id, env_kwargs=""):
    """gymnasium.make(env_id, **json.loads(env_kwargs)), or a UsageError; 1,000 steps by default."""
    try:
        env = gym.make(env_id, **(json.loads(env_kwargs) if env_kwargs else {}))
    except Exception as e:  # unknown id, not JSON, a keyword the env rejects, missing dependency...
        raise UsageError(f"cannot make environment {env_id!r} (env_kwargs {env_kwargs!r}): {e!r}")
    env = env if env.spec and env.spec.max_episode_steps else gym.wrappers.TimeLimit(env, 1_000)
    obs, acts = env.observation_space, env.action_space
    flat = isinstance(obs, Discrete) or isinstance(obs, gym.spaces.Box) and len(obs.shape) == 1
    if not (isinstance(acts, Discrete) and flat):
        env.close()
        raise UsageError(f"{env_id} has action space {acts} and observation space {obs}; dai.py "
                         "supports Discrete actions with flat (1-D) Box or Discrete observations")
    return env

def encode(obs, space):
    """An observation as a float32 vector: a Box as it is, a Discrete one as one-hot."""
    if isinstance(space, Discrete):
        return one_hot(int(obs) - int(space.start), int(space.n))
    return np.asarray(obs, np.float32)

def act(policy_layers, s, rng=None):
    """Sample a ~ q(.|s), or take the mode of q when rng is None. Returns an action index."""
    logits = mlp(policy_layers, s[None])[0]  # (n_actions,)
    if rng is None:
        return int(np.argmax(logits))
    cdf = np.cumsum(np.exp(log_softmax(logits)))
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1]), len(cdf) - 1))

# -------------------- Training loop ------------------------------------------------------------
class StopTraining(Exception):
    """StopTraining(message, exit code): on Ctrl-C (130) or a non-finite value (1)."""

def sizes_of(env, cfg):
    """network_sizes() for this env and config; a Discrete(m) observation is m long (one-hot)."""
    space = env.observation_space
    obs_dim = space.n if isinstance(space, Discrete) else space.shape[0]
    return network_sizes(int(obs_dim), int(env.action_space.n), cfg.hidden_size, cfg.hidden_layers,
                         cfg.ensemble_size, cfg.efe_nets)

def prior_sizes(transition_sizes):
    """The layer sizes of the heads' prior: the transition net's, hidden layers 1/4 as wide."""
    first, *hidden, last = transition_sizes
    return [first, *[max(n // 4, 1) for n in hidden], last]

def prior_of(state, sizes):
    """The fixed random parts of the transition model: the heads' prior net and d's projection R."""
    layers = param_views(state["prior_theta"], {"p": prior_sizes(sizes["transition"])})["p"]
    return {"layers": layers, "projection": state["projection"]}

def init_state(rng, sizes, precision, ensemble_size):
    """Parameters, the transition model's fixed random parts, target nets, log(1/beta), Adam."""
    theta, params = init_params(rng, sizes)
    params["policy"][-1][0][...] *= 0.01  # q starts near uniform
    prior_theta, _ = init_params(rng, {"p": prior_sizes(sizes["transition"])})
    obs_dim, predicted = sizes["efe"][0], sizes["transition"][-1] // ensemble_size
    projection = np.eye(obs_dim)
    if predicted < obs_dim:
        projection = rng.normal(0, 1 / np.sqrt(predicted), (obs_dim, predicted))
    log_alpha = np.array([-np.log(precision)], dtype=np.float32)  # alpha = 1/beta
    target_theta = concat_layers({net: params[net] for net in EFE_NETS if net in params})  # copies
    return {"theta": theta, "prior_theta": prior_theta, "projection": projection.astype(np.float32),
            "target_theta": target_theta, "log_alpha": log_alpha, "adam_theta": adam_init(theta),
            "adam_log_alpha": adam_init(log_alpha)}

def precision_of(state):
    return float(np.exp(-state["log_alpha"][0]))  # beta = 1/alpha

def update(params, prior, target, state, batch, delta_stats, cfg):
    """One minibatch update of f, the EFE net(s), q and beta; y and q's target G are constants."""
    s, s_next, r = batch["s"], batch["s_next"], batch["r"]
    n_actions, lam = len(params["policy"][-1][1]), cfg.epistemic_weight
    a_onehot = one_hot(batch["a"], n_actions)  # (batch, n_actions)
    d = transition_target(s, s_next, delta_stats, prior["projection"], cfg.raw_epistemic)
    e = e_next = np.zeros((len(s), n_actions), np.float32)  # the information gain at s and s'
    bonus = np.zeros(len(s))  # (batch,) what the epistemic term adds for the taken actions
    if cfg.raw_epistemic:  # the paper's: the surprise at the observed outcome, paid as reward
        bonus = lam * np.mean(prediction_error(params["transition"], prior, s, a_onehot, d), axis=1)
        r = r + bonus  # e stays 0: G_e learns 0, and q's target tends to G_r
    elif lam > 0:
        both = information_gain(params["transition"], prior, np.concatenate([s, s_next]), n_actions)
        e, e_next = np.split(both, 2)
        bonus = lam * np.sum(e * a_onehot, axis=1)
    logits_next = mlp(params["policy"], s_next)  # (batch, n_actions)
    v_next = bootstrap_value(pair_efe(target, s_next, n_actions), logits_next)  # (batch, 2)
    e_next = bootstrap_value(e_next, logits_next)  # (batch,) E_q e(s', .)
    y = efe_targets(r, e_next, batch["terminated"], v_next, cfg.gamma, EPISTEMIC_GAMMA)
    g = pair_efe(params, s, n_actions)  # (batch, 2, n_actions)
    g = g[:, 0] + lam * g[:, 1] - lam * e  # q's target G_r + lambda (G_e - e)
    losses, grads = {}, {}
    transition = (params["transition"], prior, s, a_onehot, d, batch["mask"])
    losses["transition"], grads["transition"] = value_and_grad(transition_loss)(*transition)
    for net in target:  # each EFE net towards the same y
        losses[net], grads[net] = value_and_grad(efe_loss)(params[net], s, a_onehot, y)
    beta = precision_of(state)
    losses["policy"], grads["policy"] = value_and_grad(policy_loss)(params["policy"], s, g, beta)
    flat_grad = concat_layers({net: grads[net] for net in params})  # in theta's order
    adam_step(state["theta"], flat_grad, state["adam_theta"], cfg.learning_rate)
    logq_next = log_softmax(logits_next)
    h = -np.sum(np.exp(logq_next) * logq_next, axis=1)  # (batch,) H[q] at the replayed s'
    if cfg.precision_learning_rate:  # added: a fixed beta is near greedy or uniform by G's scale
        grad = np.float32(np.mean(h) - cfg.target_entropy * np.log(n_actions))  # random: beta up
        adam_step(state["log_alpha"], grad, state["adam_log_alpha"], cfg.precision_learning_rate)
    return {"transition_loss": float(losses["transition"]), "efe_loss": float(losses["efe"]),
            "policy_loss": float(losses["policy"]), "entropy": float(np.mean(h)),
            "epistemic_bonus": float(np.mean(bonus)), "precision": precision_of(state)}

UPDATE_METRICS = ("transition_loss", "efe_loss", "policy_loss", "entropy", "epistemic_bonus")
HISTORY = ("episode_step", "episode_return", "episode_length",  # per episode, then per evaluation:
           "eval_step", "eval_return", "eval_train_seconds", *UPDATE_METRICS, "precision")

def check_paths(cfg):
    """Refuse to write where there is no folder, or over a file but the checkpoint resumed."""
    for flag, path in (("save", cfg.save), ("log", cfg.log)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"--{flag} {path}: the folder does not exist")
        if path and os.path.exists(path) and not (cfg.load and os.path.samefile(path, cfg.load)):
            raise UsageError(f"--{flag} {path} already exists; choose another path")

def train(cfg, progress=print, checkpoint=None):
    """(params, HISTORY's lists) of a run, or of `checkpoint` resumed (evaluated if it is done)."""
    check_config(cfg)
    check_paths(cfg)
    progress = progress or (lambda line: None)  # None: silent
    env = make_env(cfg.env_id, cfg.env_kwargs)
    sizes = sizes_of(env, cfg)
    if checkpoint is None:  # seeding: one generator for the weights, actions and minibatches
        rng, start = np.random.default_rng(cfg.seed), 0
        state = init_state(rng, sizes, cfg.precision, cfg.ensemble_size)
        buf = buffer_init(cfg.buffer_size, sizes["efe"][0], rng, cfg.ensemble_size)
    else:  # resuming: the same checkpoint, the same run
        state, buf, start = restore(checkpoint, cfg, sizes)
        rng = np.random.default_rng([cfg.seed, start])
    params, prior = param_views(state["theta"], sizes), prior_of(state, sizes)
    target = param_views(state["target_theta"], {n: sizes[n] for n in EFE_NETS if n in sizes})
    history = {key: [] for key in HISTORY}
    if start >= cfg.total_steps:  # done: evaluate it (a higher total_steps trains on)
        env.close()
        progress(f"eval_step {start} | eval_return {np.mean(evaluate(params, cfg)):.4g}")
        return params, history
    log = open(cfg.log, "w", newline="", buffering=1) if cfg.log else None  # flushed by the line
    write_row = csv.writer(log).writerow if log else (lambda row: None)
    write_row(HISTORY[3:])
    obs, _ = env.reset(seed=cfg.seed + start)  # the env once (offset by the steps done, resuming)
    env.action_space.seed(cfg.seed + start)
    s, ep_return, ep_length, done_steps = encode(obs, env.observation_space), 0.0, 0, start
    running = dict.fromkeys(UPDATE_METRICS, float("nan"))  # moving averages over ~100 updates
    clock, eval_seconds = time.perf_counter(), 0.0  # eval_seconds: the time spent evaluating
    try:
        for step in range(start + 1, cfg.total_steps + 1):
            a = act(params["policy"], s, rng)
            obs, r, terminated, truncated, _ = env.step(int(a) + int(env.action_space.start))
            s_next = encode(obs, env.observation_space)
            buffer_add(buf, s, a, r, s_next, terminated)  # truncated: s' has a future, not terminal
            s, ep_return, ep_length, done_steps = s_next, ep_return + float(r), ep_length + 1, step
            if terminated or truncated:
                for key, value in zip(HISTORY[:3], (step, ep_return, ep_length)):
                    history[key].append(value)
                s, ep_return, ep_length = encode(env.reset()[0], env.observation_space), 0.0, 0
            if step >= cfg.learning_starts and step % cfg.train_every == 0:
                batch = buffer_sample(buf, rng, cfg.batch_size)
                if state["adam_theta"]["t"] == 0:  # the first update
                    scale_prior(prior, batch["s"], one_hot(batch["a"], sizes["policy"][-1]))
                new = update(params, prior, target, state, batch, buf["delta_stats"], cfg)
                for name in (name for name, value in new.items() if not np.isfinite(value)):
                    kept = f"; {cfg.save} keeps the last good checkpoint" * os.path.exists(cfg.save)
                    raise StopTraining(f"{name} became {new[name]} at step {step}{kept}", 1)
                for key, old in running.items():
                    running[key] = new[key] if np.isnan(old) else old + 0.01 * (new[key] - old)
                for net in target:
                    polyak(target[net], params[net], cfg.tau)
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.total_steps:
                seconds = time.perf_counter() - clock - eval_seconds  # training time so far
                evals = evaluate(params, cfg)
                eval_seconds = time.perf_counter() - clock - seconds
                row = [step, float(np.mean(evals)), seconds, *running.values(), precision_of(state)]
                for key, value in zip(HISTORY[3:], row):
                    history[key].append(value)
                write_row(row)  # the log's row, then the same numbers as a progress line
                line = " | ".join(f"{k} {v:.4g}" for k, v in zip(HISTORY[4:], row[1:]))
                progress(f"eval_step {step} | {line}")
                if cfg.save:
                    save_checkpoint(cfg.save, cfg, step, state, buf)
    except KeyboardInterrupt:
        if cfg.save:  # the run so far, every step's transition stored
            save_checkpoint(cfg.save, cfg, done_steps, state, buf)
        raise StopTraining(f"interrupted at step {done_steps}", 130) from None
    finally:
        env.close()
        if log:
            log.close()
    return params, history

CHECKPOINT_VERSION = 8

def flatten(tree, prefix=""):
    """{"a": {"b": x}} -> {"a.b": np.asarray(x)}: nested dicts as the flat arrays of an .npz."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = np.asarray(value)
    return flat

def save_checkpoint(path, cfg, step, state, buf):
    """The run so far as an .npz, written beside `path` and renamed over it (atomic)."""
    if not np.all(np.isfinite(state["theta"])):
        raise StopTraining(f"parameters are not finite at step {step}; {path} not overwritten", 1)
    config = json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_OPTIONS})
    arrays = flatten({"format_version": CHECKPOINT_VERSION, "config": config, "step": step,
                      "state": state, "buffer": buf})
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise

def read_checkpoint(path):
    """(arrays, config) of a checkpoint of this format; a damaged file fails the .npz's CRC-32s."""
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:  # so it runs no code
            ckpt = {key: data[key] for key in data.files}
    except Exception as e:  # anything a damaged file can raise while being parsed
        raise UsageError(f"{path} is not a readable checkpoint (damaged, or not an .npz): {e}")
    fields = {f.name for f in dataclasses.fields(Config)} - set(RUN_OPTIONS)
    try:
        config = json.loads(str(ckpt.get("config")))
        if str(ckpt.get("format_version")) != str(CHECKPOINT_VERSION) or config.keys() != fields:
            raise ValueError
    except (ValueError, AttributeError):  # not JSON, or not a dict
        raise UsageError(f"{path} is not a dai.py checkpoint of format {CHECKPOINT_VERSION}")
    return ckpt, config

def restore(ckpt, cfg, sizes):
    """(state, buffer, step) of a checkpoint whose arrays are shaped as this run's own would be."""
    rng = np.random.default_rng()  # only to build the fresh agent
    tree = {"state": init_state(rng, sizes, 1.0, cfg.ensemble_size), "step": 0,
            "buffer": buffer_init(cfg.buffer_size, sizes["efe"][0], rng, cfg.ensemble_size)}
    wrong = [k for k, v in flatten(tree).items()
             if k not in ckpt or (ckpt[k].shape, ckpt[k].dtype.kind) != (v.shape, v.dtype.kind)]
    if wrong:
        raise UsageError(f"the checkpoint does not fit {cfg.env_id} with these flags ({wrong[0]} "
                         "differs); load it with the env_id and network flags it was saved with")
    def fill(tree, prefix):  # tree's dicts, filled with the checkpoint's arrays
        return {k: fill(v, f"{prefix}{k}.") if isinstance(v, dict) else ckpt[prefix + k][()]
                for k, v in tree.items()}
    return fill(tree["state"], "state."), fill(tree["buffer"], "buffer."), int(ckpt["step"])

# -------------------- Evaluation ---------------------------------------------------------------
def evaluate(params, cfg):
    """Returns of cfg.eval_episodes episodes with the mode of q, on an env seeded seed + 10000."""
    with make_env(cfg.env_id, cfg.env_kwargs) as env:
        returns, (obs, _) = [], env.reset(seed=cfg.seed + 10_000)
        for _ in range(cfg.eval_episodes):
            total, done = 0.0, False
            while not done:
                a = act(params["policy"], encode(obs, env.observation_space))
                obs, r, terminated, truncated, _ = env.step(int(a) + int(env.action_space.start))
                total, done = total + float(r), terminated or truncated
            returns.append(total)
            obs, _ = env.reset()
    return returns

# -------------------- Command line -------------------------------------------------------------
PAPER_AGENT = ("--raw-epistemic --epistemic-weight 1 --precision 1 --precision-learning-rate 0 "
               "--efe-nets 1 --ensemble-size 1 --hidden-size 100 --hidden-layers 1")

def build_parser():
    """A flag per Config field, its help the field's comment; only the flags given are set."""
    source = (line.partition("#") for line in inspect.getsource(Config).splitlines())
    helps = {code.split(":")[0].strip(): note.strip() for code, _, note in source if note}
    parser = argparse.ArgumentParser(
        prog="dai.py", argument_default=argparse.SUPPRESS,
        formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=36, width=110),
        description="Deep active inference (Millidge 2019) on a Gymnasium environment.",
        epilog=f"The paper's agent: {PAPER_AGENT}")
    parser.add_argument("env_id", help=helps.get("env_id"))
    for field in dataclasses.fields(Config)[1:]:
        kind = {"type": field.type, "metavar": field.type.__name__.upper()}
        if field.type is bool:
            kind = {"action": argparse.BooleanOptionalAction}
        text = f"{helps.get(field.name, '')} (default: {field.default!r})"
        parser.add_argument("--" + field.name.replace("_", "-"), **kind, help=text)
    return parser

def main(argv=None):
    """Exit codes: 0 done, 1 a non-finite value, 2 bad input, 130 Ctrl-C."""
    try:
        given = vars(build_parser().parse_args(argv))
        checkpoint, saved = read_checkpoint(given["load"]) if given.get("load") else (None, {})
        train(Config(**{**saved, **given}), checkpoint=checkpoint)  # the given flags override
    except UsageError as e:
        print(f"dai.py: error: {e}", file=sys.stderr)
        return 2
    except StopTraining as e:
        print(f"dai.py: {e.args[0]}", file=sys.stderr)
        return e.args[1]
    return 0

if __name__ == "__main__":
    sys.exit(main())
