"""Deep active inference as variational policy gradients (Millidge 2019), in one file.

    pip install -r requirements.txt
    python dai.py CartPole-v1                      # train with the defaults (50k env steps)
    python dai.py Acrobot-v1 --total-steps 100000 --seed 1
    python dai.py --help                           # every hyperparameter, its meaning and default
    python -m pytest -q test_dai.py                # the tests

The agent picks actions that minimise the expected free energy (EFE) G of the future. Reward is
read as the log prior preference over outcomes, so -r is the pragmatic part of G; the transition
model's surprise at an outcome is its epistemic part (information gain), which makes an action
more attractive. Three networks and a target copy learn from a replay buffer:

    transition model   f(s, a) ~ d = (s' - s - mu) / sigma, the state change   transition(), transition_loss()
                       standardised by its running stats (raw: d = s' - s)    transition_target()
    prediction error   eps(s, a, s') = 1/2 |d - f(s, a)|^2                prediction_error()
    epistemic value    e = min(eps / obs_dim, 1)  (raw: e = eps)          epistemic_value()
    epistemic weight   lambda_t = lambda_0 max(0, 1 - t/T)                epistemic_weight_at()
                       with T = epistemic_decay_fraction * total_steps (T = 0: lambda_0 always);
                       (epistemic_until_reward) 0 once an episode has returned differently from the first
    EFE value net      G(s, .) one estimate per action, lower is better   efe_loss()
    EFE target         y = -r - lambda_t*e + gamma*(1 - terminated)*V(s') efe_targets()
    (epistemic_head)   G = G_prag + lambda_t G_epi, targets -r + gamma V_prag, -e + gamma V_epi   head_targets()
    (pragmatic_head)   G_prag beside G; q follows G until the reward is found, then G_prag   value_mix()
    bootstrap value    V(s') = sum_a' q(a'|s') Gbar(s', a')   or  min_a' Gbar(s', a')   bootstrap_value()
    policy net         q(.|s) = softmax(logits(s))
    policy loss        KL[ q(.|s) || softmax(-beta * G(s, .)) ]           policy_loss()
    precision          beta = 1/alpha, log alpha learned to hold a target entropy   precision_gradient()
    target net         Gbar <- (1 - tau) Gbar + tau G                     (in train())

Minimising the policy loss is a policy-gradient step on E_q[-beta G] + H[q]: maximum-entropy RL
(discrete soft actor-critic) with -G in place of Q and the precision beta as inverse temperature.
With epistemic_weight = 0 it *is* discrete SAC on -G; with beta -> infinity as well it is greedy
Q-learning on -G (the paper's Q-learning baseline). The default epistemic term is standardised,
fades, and leaves the policy once the reward is found: the policy then follows a head G_prag
learned from the reward alone (measured in the README: MountainCar's goal sooner than reward
alone, nothing worse after it; a sparse corridor that reward alone never crosses, solved). The
author's form, raw error with a constant lambda = 1, is `--epistemic raw --epistemic-weight 1
--epistemic-decay-fraction 0 --no-epistemic-until-reward --no-pragmatic-head`.

The file reads top to bottom: config -> maths helpers -> networks and losses -> optimiser ->
replay buffer -> acting -> training loop -> evaluation -> command line.
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
from dataclasses import dataclass

import autograd.numpy as anp  # used inside every function that autograd differentiates
import gymnasium as gym
import numpy as np  # used everywhere else
from autograd import value_and_grad
from autograd.extend import defvjp, primitive


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
@dataclass
class Config:
    """Every hyperparameter. Each field is a command-line flag of the same name in kebab case."""

    env_id: str = "CartPole-v1"  # Gymnasium id: Discrete actions, flat Box or Discrete observations
    seed: int = 0  # seeds the env, its action space and the one NumPy generator used for the rest
    total_steps: int = 50_000  # environment steps to train for
    hidden_size: int = 128  # ReLU units in each hidden layer of all three networks
    hidden_layers: int = 2  # hidden layers in each network
    learning_rate: float = 2e-3  # Adam step size for the three networks
    batch_size: int = 64  # transitions per minibatch update
    buffer_size: int = 100_000  # replay buffer capacity (oldest transitions are overwritten)
    learning_starts: int = 1_000  # env steps collected before the first update
    train_every: int = 1  # env steps between update rounds
    updates: int = 1  # minibatch updates per update round
    gamma: float = 0.99  # discount of future expected free energy, in [0, 1)
    tau: float = 0.005  # Polyak rate of the target EFE net, in (0, 1]; 1 = hard copy every update
    epistemic: str = "standardised"  # the epistemic value: "raw" (the author's 1/2|s' - s - f|^2) or "standardised" (error per dimension in units of the dynamics' spread, capped at 1)
    epistemic_weight: float = 30.0  # lambda_0: weight of the epistemic (information gain) value at step 0, >= 0
    epistemic_decay_fraction: float = 0.1  # share of total_steps over which lambda falls linearly to 0, >= 0; 0 = a constant lambda (the author's)
    epistemic_until_reward: bool = True  # lambda_t = 0 for good once a finished episode's return differs from the first episode's: the reward then ranks outcomes, and the preferences can choose
    epistemic_head: bool = False  # learn G_epi in a head of its own, G = G_prag + lambda_t G_epi, so that a fading lambda leaves the policy at once
    pragmatic_head: bool = True  # learn G_prag (reward only) in a head beside G; the policy follows G until the reward is found (as epistemic_until_reward defines it), G_prag from then on
    bootstrap: str = "expectation"  # V(s'): "expectation" under q, or "min" over actions
    precision: float = 1.0  # beta: fixed precision, or the starting value when it is learned
    learn_precision: bool = True  # learn beta to hold the policy entropy at target_entropy
    target_entropy: float = 0.3  # policy entropy to hold, as a fraction of log(n_actions), in (0, 1)
    precision_learning_rate: float = 3e-4  # Adam step size of log(1/beta)
    eval_every: int = 2_500  # env steps between evaluations; 0 = only at the end
    eval_episodes: int = 20  # episodes per evaluation (policy mode, env seeded seed + 10000)
    log_every: int = 2_500  # env steps between progress lines
    env_kwargs: str = ""  # JSON object of keyword arguments for gymnasium.make, e.g. '{"is_slippery": false}'
    # Run options (not stored in a checkpoint's config).
    save: str = ""  # checkpoint file (.npz) written every save_every steps, at the end and on Ctrl-C
    save_every: int = 10_000  # env steps between checkpoints when save is set
    load: str = ""  # checkpoint to resume from (its config, unless flags override it)
    eval_only: bool = False  # with load: evaluate the saved agent for eval_episodes, no training
    render: bool = False  # after training (or with eval_only), watch eval_episodes in a window
    log: str = ""  # CSV file: a row per finished episode and per evaluation (appended)


RUN_OPTIONS = ("save", "save_every", "load", "eval_only", "render", "log")
# Fields added after checkpoint format 3, with the value a checkpoint that lacks them was trained
# with (they did not exist yet), so that resuming it does not switch on today's defaults.
ADDED_FIELDS = {"epistemic_until_reward": False, "epistemic_head": False, "pragmatic_head": False}


# ---------------------------------------------------------------------------------------------
# Maths helpers
# ---------------------------------------------------------------------------------------------
def log_softmax(x):
    """log softmax over the last axis, x - logsumexp(x), stable for large |x|."""
    z = x - anp.max(x, axis=-1, keepdims=True)  # shift so the largest exponent is exp(0)
    return z - anp.log(anp.sum(anp.exp(z), axis=-1, keepdims=True))


def softmax(x):
    return anp.exp(log_softmax(x))


def entropy(logits):
    """H[q] = -sum_a q(a) log q(a) for each row of logits."""
    logq = log_softmax(logits)
    return -anp.sum(anp.exp(logq) * logq, axis=-1)


def one_hot(index, n):
    """(batch,) integers -> (batch, n) float32 one-hot rows."""
    return np.eye(n, dtype=np.float32)[index]


def running_stats_init(dim):
    """Count, mean and sum of squared deviations (m2) of the vectors seen so far (Welford)."""
    return {"count": 0, "mean": np.zeros(dim), "m2": np.zeros(dim)}


def running_stats_add(stats, x):
    """Fold one vector x into the statistics: exact, in one pass, without storing x.
    mean <- mean + (x - mean)/n;  m2 <- m2 + (x - mean_old)(x - mean_new)."""
    stats["count"] += 1
    d = x - stats["mean"]
    stats["mean"] += d / stats["count"]
    stats["m2"] += d * (x - stats["mean"])


def running_std(stats, floor=1e-6):
    """The standard deviation (over n, as np.std) of the vectors seen; at least `floor`, so a
    dimension that has never changed divides nothing by zero."""
    return np.maximum(np.sqrt(stats["m2"] / max(stats["count"], 1)), floor)


# ---------------------------------------------------------------------------------------------
# Networks and losses
# ---------------------------------------------------------------------------------------------
# Each network is a multilayer perceptron stored as a list of (W, b) pairs. All parameters of the
# three networks live in one flat vector `theta`; the (W, b) arrays are reshaped *views* into it,
# so one vector operation (the Adam step) updates every network at once.
NETWORKS = ("transition", "efe", "policy")


def network_sizes(obs_dim, n_actions, cfg):
    """Layer sizes of each network: input, hidden..., output."""
    hidden = [cfg.hidden_size] * cfg.hidden_layers
    return {
        "transition": [obs_dim + n_actions, *hidden, obs_dim],  # (s, one-hot a) -> s' - s
        "efe": [obs_dim, *hidden, n_actions * len(efe_head_names(cfg))],  # s -> each head's G(s, a) for every a
        "policy": [obs_dim, *hidden, n_actions],  # s -> logits of q(a|s)
    }


def efe_head_names(cfg):
    """What each head of the EFE net learns, in output order: ("G",) with one head,
    ("G_prag", "G_epi") with epistemic_head, ("G_prag", "G") with pragmatic_head."""
    if cfg.epistemic_head:
        return ("G_prag", "G_epi")
    return ("G_prag", "G") if cfg.pragmatic_head else ("G",)


def n_mlp_params(sizes):
    return sum(m * n + n for m, n in zip(sizes[:-1], sizes[1:]))


def mlp_views(flat, sizes):
    """The (W, b) list of one MLP as views into the flat vector `flat`."""
    layers, i = [], 0
    for m, n in zip(sizes[:-1], sizes[1:]):
        W = flat[i : i + m * n].reshape(m, n)
        b = flat[i + m * n : i + m * n + n]
        layers.append((W, b))
        i += m * n + n
    return layers


def param_views(theta, sizes):
    """{network name: [(W, b), ...]} as views into theta, laid out in the order of NETWORKS."""
    params, start = {}, 0
    for name in NETWORKS:
        stop = start + n_mlp_params(sizes[name])
        params[name] = mlp_views(theta[start:stop], sizes[name])
        start = stop
    return params


def n_params(sizes):
    """Length of theta: all parameters of the three networks."""
    return sum(n_mlp_params(s) for s in sizes.values())


def efe_slice(sizes):
    """Where the EFE net's parameters sit in theta (the target net copies this slice)."""
    start = n_mlp_params(sizes["transition"])
    return slice(start, start + n_mlp_params(sizes["efe"]))


def init_params(rng, sizes):
    """He-normal weights, zero biases; the policy's output layer is scaled by 0.01 so that q
    starts uniform (the first steps are then random exploration). A second EFE head is drawn from
    a child stream of rng (rng.spawn), so that every other weight, and every later action and
    minibatch drawn from rng, is the one-head agent's. Returns (theta, params)."""
    theta = np.zeros(n_params(sizes), dtype=np.float32)
    params = param_views(theta, sizes)
    n_actions = sizes["policy"][-1]
    efe_out_W = params["efe"][-1][0]  # (hidden, heads * n_actions)
    for name in NETWORKS:
        for W, b in params[name]:
            columns = n_actions if W is efe_out_W else W.shape[1]
            W[:, :columns] = rng.normal(0.0, np.sqrt(2.0 / W.shape[0]), (W.shape[0], columns))  # He: keeps ReLU activations' scale
    second_heads = efe_out_W[:, n_actions:]
    second_heads[...] = rng.spawn(1)[0].normal(0.0, np.sqrt(2.0 / efe_out_W.shape[0]), second_heads.shape)
    policy_out_W = params["policy"][-1][0]
    policy_out_W *= 0.01
    return theta, params


def mlp_inputs(layers, x):
    """Forward pass keeping each layer's input: [x, h1, h2, ...] and the output (batch, out)."""
    inputs = [x]
    for W, b in layers[:-1]:
        inputs.append(np.maximum(inputs[-1] @ W + b, 0.0))  # ReLU hidden layer
    W, b = layers[-1]
    return inputs, inputs[-1] @ W + b


@primitive
def mlp(layers, x):
    """(batch, in) -> (batch, out): ReLU hidden layers, linear output. `x` is data (never
    differentiated); the gradient with respect to `layers` is mlp_vjp, written out below."""
    return mlp_inputs(layers, x)[1]


def mlp_vjp(out, layers, x):
    """Backpropagation through mlp(), by hand. Autograd would trace every dot, add and ReLU,
    with ~15-20 us of bookkeeping each: a whole update took 6.1 ms that way and takes 3.9 ms
    with this (benchmarks/update_cost.py). The losses built on mlp() are still differentiated
    by autograd; test_dai.py checks this against autograd tracing a plain MLP."""
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


def transition(layers, s, a_onehot):
    """f(s, a): the predicted state change s' - s.  (batch, obs_dim)"""
    return mlp(layers, anp.concatenate([s, a_onehot], axis=1))


def transition_target(s, s_next, delta_stats, epistemic):
    """What f(s, a) learns to predict: the state change d = s' - s ("raw"), or d standardised,
    (d - mean) / std with the running statistics of every change stored ("standardised"), so
    that the model's error is measured in units of the dynamics' own spread.  (batch, obs_dim)"""
    delta = s_next - s
    if epistemic == "raw":
        return delta
    return ((delta - delta_stats["mean"]) / running_std(delta_stats)).astype(np.float32)


def prediction_error(layers, s, a_onehot, delta):
    """eps(s, a, s') = 1/2 |d - f(s, a)|^2, d from transition_target(): the transition model's
    surprise (Gaussian likelihood, unit variance) at each transition.  (batch,)"""
    return 0.5 * anp.sum((delta - transition(layers, s, a_onehot)) ** 2, axis=1)


def transition_loss(layers, s, a_onehot, delta):
    """L_T = mean eps(s, a, s'): fit the transition model by maximum likelihood."""
    return anp.mean(prediction_error(layers, s, a_onehot, delta))


def efe_heads(layers, s, n_actions):
    """The EFE net's estimates at s, one per head of efe_head_names().  (batch, heads, n_actions)"""
    g = mlp(layers, s)  # (batch, heads * n_actions)
    return anp.reshape(g, (g.shape[0], -1, n_actions))


def value_mix(heads, epistemic_weight, reward_found):
    """c in G = sum_k c_k G_k: the value the policy follows, made of the heads of efe_head_names().
    ("G",): G itself. ("G_prag", "G_epi"): G_prag + lambda_t G_epi. ("G_prag", "G"): G until
    the reward is found, then G_prag, which has learned from every transition without the bonus."""
    if heads == ("G_prag", "G_epi"):
        return (1.0, epistemic_weight)
    if heads == ("G_prag", "G"):
        return (1.0, 0.0) if reward_found else (0.0, 1.0)
    return (1.0,)


def efe_value(g_heads, mix):
    """G(s, .) = sum_k c_k G_k(s, .), g_heads from efe_heads(), mix = c from value_mix().  (batch, n_actions)"""
    return sum(c * g_heads[:, k] for k, c in enumerate(mix) if c)


def heads_learning(heads, reward_found):
    """w in L_G: 1 for each head that learns, 0 for one that has stopped. With ("G_prag", "G") the
    head G stops once the policy follows G_prag: nothing reads it after that (neither the policy
    nor a bootstrap), and its gradient would only move the layers G_prag shares with it. So where
    the reward is found before the first update (CartPole) the agent learns what lambda = 0 does."""
    if heads == ("G_prag", "G") and reward_found:
        return (1.0, 0.0)
    return (1.0,) * len(heads)


def efe_loss(layers, s, a_onehot, y, learning):
    """L_G = mean over the batch of sum_k w_k (G_k(s, a) - y_k)^2, one term per head k, with y a
    constant from head_targets() and w from heads_learning().  y: (batch, heads), w: (heads,)"""
    g = efe_heads(layers, s, a_onehot.shape[1])  # (batch, heads, n_actions)
    g_taken = anp.sum(g * a_onehot[:, None, :], axis=2)  # (batch, heads) G of the action taken
    return anp.mean(anp.sum(learning * (g_taken - y) ** 2, axis=1))


def policy_loss(layers, s, g, beta):
    """L_q = mean_s KL[q(.|s) || p(.|s)] with p = softmax(-beta G(s, .)), G a constant.

    = sum_a q (log q + beta G) + log Z(s): the exact KL over all actions (no sampling). It is zero
    exactly when q = softmax(-beta G) and positive elsewhere; its gradient is the variational
    policy gradient of E_q[-beta G] + H[q]."""
    logq = log_softmax(mlp(layers, s))  # (batch, n_actions)
    logp = log_softmax(-beta * g)  # (batch, n_actions), constant
    return anp.mean(anp.sum(anp.exp(logq) * (logq - logp), axis=1))


# One autograd call per loss: each network's parameters appear in its own loss only. (Summing the
# three losses into one call is slower here: autograd's bookkeeping for a nested parameter
# container costs more than two extra calls.)
transition_loss_and_grad = value_and_grad(transition_loss)
efe_loss_and_grad = value_and_grad(efe_loss)
policy_loss_and_grad = value_and_grad(policy_loss)


def bootstrap_value(g_next, logits_next, kind, mix):
    """V(s') of each head of the target net, g_next = Gbar(s', .) from efe_heads(): the
    expectation under q(.|s') ("expectation"), or the value of the action minimising
    Gbar = efe_value(g_next, mix) ("min", the author's main variant; for one head, min_a' Gbar(s', a')).
    (batch, heads)"""
    if kind == "expectation":
        w = softmax(logits_next)  # (batch, n_actions)
    else:
        w = one_hot(np.argmin(efe_value(g_next, mix), axis=1), g_next.shape[2])
    return np.sum(w[:, None, :] * g_next, axis=2)


def epistemic_value(eps, obs_dim, epistemic):
    """e, the epistemic value of each transition (its information-gain bonus) before the weight lambda.

    "raw": eps itself, the author's form. Its size is the model's fitting noise in the env's own
    units (1e-3..1e-7 per step), so next to a reward of 1 it does almost nothing.
    "standardised": eps per state dimension, capped at 1. With standardised targets it reads the
    same on any task: ~0 where the model predicts the change, 1/2 where it does no better than
    the average change. On MountainCar (benchmarks/novelty.py) transitions like those seen score
    1e-5..1e-3 and unseen ones 0.3..800, so the cap keeps the contrast and bounds what one
    transition can add to G at lambda_t.  (batch,)"""
    if epistemic == "raw":
        return eps
    return np.minimum(eps / obs_dim, 1.0)


def epistemic_weight_at(step, cfg, reward_step=None):
    """lambda_t = lambda_0 max(0, 1 - t/T), T = round(epistemic_decay_fraction * total_steps)
    (T = 0: lambda_0 always); with epistemic_until_reward, 0 from reward_step on, the step at which
    a finished episode first returned differently from the first episode (None: not yet).

    In the paper the epistemic value is the information the agent expects to gain about its
    model; it shrinks as the model's beliefs settle, which leaves only the pragmatic value
    (reward). A point-estimate network's error never settles to zero (fitting noise, states it
    cannot predict), so the fading is made explicit: exploration early, pure preference later.
    G is bootstrapped, so it keeps some of the bonus for ~1/((1 - gamma) tau) updates after
    lambda reaches 0. T is a share of the run, as exploration_fraction is in SB3's and CleanRL's
    DQN, so that a short run is not all exploration and a long one not all preference; resuming
    with a larger total_steps stretches it.

    epistemic_until_reward stops the bonus when the reward is found. While every episode has
    returned the same, the preferences rank no outcome the agent has met above another, so the
    pragmatic value cannot choose between policies and only the epistemic value can. Once two
    episodes have returned differently, there is something to prefer, and no new bonus enters G
    (with one head, what G has bootstrapped of it so far still fades out as described above).
    Where episodes differ in return from the start (CartPole, LunarLander) this is reward alone
    before the first update; where the reward is sparse (MountainCar, a corridor) the schedule
    runs unchanged until the goal is first reached."""
    if cfg.epistemic_until_reward and reward_step is not None:
        return 0.0
    decay_steps = round(cfg.epistemic_decay_fraction * cfg.total_steps)
    if decay_steps == 0:
        return cfg.epistemic_weight
    return cfg.epistemic_weight * max(0.0, 1.0 - step / decay_steps)


def efe_targets(r, e, terminated, v_next, gamma, epistemic_weight):
    """y = -r - lambda_t*e + gamma*(1 - terminated)*V(s'), e from epistemic_value().

    -r is the pragmatic (extrinsic) value; -lambda_t*e the epistemic value: the author's sign, so
    surprising transitions *lower* G and the agent seeks them out. A terminal s' has no future;
    a truncated (time-limit) one does, so only `terminated` stops the bootstrap.  (batch,)"""
    return -r - epistemic_weight * e + gamma * (1.0 - terminated) * v_next


def head_targets(r, e, terminated, v_next, gamma, epistemic_weight, heads):
    """The EFE target of each head of efe_head_names(), v_next (batch, heads) from
    bootstrap_value(). Each head has its own Bellman equation, an efe_targets() with its own parts:

        G        y = -r - lambda_t e + gamma V(s')
        G_prag   y = -r + gamma V_prag(s')
        G_epi    y = -e + gamma V_epi(s')

    G_prag and G_epi are like RND's extrinsic and intrinsic value heads. The EFE is linear in its
    parts, so with a constant lambda y_prag + lambda y_epi is G's target, and ("G",) and
    ("G_prag", "G_epi") learn the same G. With a fading lambda they differ: G keeps the epistemic
    value it has bootstrapped until the target net forgets it; G_prag + lambda_t G_epi drops it as
    lambda_t falls.  (batch, heads)"""
    parts = {"G": (r, epistemic_weight), "G_prag": (r, 0.0), "G_epi": (np.zeros_like(r), 1.0)}  # (reward, lambda)
    y = [efe_targets(parts[name][0], e, terminated, v_next[:, k], gamma, parts[name][1]) for k, name in enumerate(heads)]
    return np.stack(y, axis=1)


def precision_gradient(batch_entropy, target_entropy):
    """d/d(log alpha) of the temperature loss log(alpha) * (H[q] - target), alpha = 1/beta:
    too random a policy (H > target) lowers alpha, i.e. raises the precision beta."""
    return np.float32(np.mean(batch_entropy) - target_entropy)


# ---------------------------------------------------------------------------------------------
# Optimiser
# ---------------------------------------------------------------------------------------------
def adam_init(x):
    return {"m": np.zeros_like(x), "v": np.zeros_like(x), "t": 0}


def adam_step(x, grad, state, lr, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step on the flat array x, in place; the moments persist in `state`.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  x <- x - lr_t m / (sqrt(v) + eps),
    with lr_t = lr sqrt(1 - b2^t) / (1 - b1^t) correcting the zero start of m and v."""
    state["t"] += 1
    m, v = state["m"], state["v"]
    m *= b1
    m += (1 - b1) * grad
    v *= b2
    v += (1 - b2) * grad * grad
    lr_t = lr * np.sqrt(1 - b2 ** state["t"]) / (1 - b1 ** state["t"])
    x -= lr_t * m / (np.sqrt(v) + eps)


# ---------------------------------------------------------------------------------------------
# Replay buffer
# ---------------------------------------------------------------------------------------------
def buffer_init(capacity, obs_dim):
    """A ring buffer of (s, a, r, s', terminated) as NumPy arrays, with the running statistics
    of every state change s' - s ever added (not only those still stored)."""
    return {
        "s": np.zeros((capacity, obs_dim), np.float32),
        "a": np.zeros(capacity, np.int64),
        "r": np.zeros(capacity, np.float32),
        "s_next": np.zeros((capacity, obs_dim), np.float32),
        "terminated": np.zeros(capacity, np.float32),
        "index": 0,  # where the next transition goes
        "size": 0,  # how many slots hold a transition
        "delta_stats": running_stats_init(obs_dim),
    }


def buffer_add(buf, s, a, r, s_next, terminated):
    i = buf["index"]
    buf["s"][i], buf["a"][i], buf["r"][i] = s, a, r
    buf["s_next"][i], buf["terminated"][i] = s_next, terminated
    capacity = len(buf["a"])
    buf["index"] = (i + 1) % capacity
    buf["size"] = min(buf["size"] + 1, capacity)
    running_stats_add(buf["delta_stats"], s_next - s)


def buffer_sample(buf, rng, batch_size):
    """A minibatch drawn uniformly, with replacement, from the stored transitions."""
    i = rng.integers(0, buf["size"], size=batch_size)
    return {key: buf[key][i] for key in ("s", "a", "r", "s_next", "terminated")}


# ---------------------------------------------------------------------------------------------
# Acting
# ---------------------------------------------------------------------------------------------
class UsageError(Exception):
    """Bad input (a flag, an environment, a checkpoint): reported in one line, exit code 2."""


class StopTraining(Exception):
    """Training stopped early, with a one-line message and main()'s exit code (1 or 130)."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def parse_env_kwargs(text):
    """The env_kwargs JSON object as a dict ("" -> {})."""
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"env_kwargs is not valid JSON ({e}): {text}") from None
    if not isinstance(kwargs, dict):
        raise UsageError(f"env_kwargs must be a JSON object such as '{{\"is_slippery\": false}}', not {text}")
    return kwargs


DEFAULT_TIME_LIMIT = 1_000  # steps, for environments registered without one


def make_env(env_id, env_kwargs="", render_mode=None):
    """gymnasium.make(env_id, **env_kwargs), refusing what this agent does not support.

    An environment registered without a time limit gets DEFAULT_TIME_LIMIT (a truncation), so
    that every episode, evaluation included, ends; env_kwargs {"max_episode_steps": N} sets it."""
    kwargs = parse_env_kwargs(env_kwargs)
    if render_mode:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(env_id, **kwargs)
    except Exception as e:  # unknown id, missing dependency, a keyword the env rejects...
        with_kwargs = f" with env_kwargs {env_kwargs}" if env_kwargs else ""
        raise UsageError(f"cannot make environment {env_id!r}{with_kwargs}: {type(e).__name__}: {e}") from None
    if env.spec is None or env.spec.max_episode_steps is None:
        env = gym.wrappers.TimeLimit(env, DEFAULT_TIME_LIMIT)
    obs_space, act_space = env.observation_space, env.action_space
    if not isinstance(act_space, gym.spaces.Discrete):
        env.close()
        raise UsageError(f"{env_id} has action space {act_space}; dai.py supports Discrete action spaces only")
    flat_box = isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1
    if not (flat_box or isinstance(obs_space, gym.spaces.Discrete)):
        env.close()
        raise UsageError(f"{env_id} has observation space {obs_space}; dai.py supports flat (1-D) Box "
                         "or Discrete observation spaces only")
    return env


def space_sizes(env):
    """(obs_dim, n_actions); a Discrete(m) observation is a one-hot vector of length m."""
    obs_space = env.observation_space
    if isinstance(obs_space, gym.spaces.Discrete):
        return int(obs_space.n), int(env.action_space.n)
    return int(obs_space.shape[0]), int(env.action_space.n)


def encode(obs, obs_space):
    """An observation as a float32 vector: a Box as it is, a Discrete one as one-hot."""
    if isinstance(obs_space, gym.spaces.Discrete):
        return one_hot(int(obs) - int(obs_space.start), int(obs_space.n))
    return np.asarray(obs, dtype=np.float32)


def act(policy_layers, s, rng=None):
    """Sample a ~ q(.|s), or take the mode of q when rng is None. Returns an action index."""
    logits = mlp(policy_layers, s[None])[0]  # (n_actions,)
    if rng is None:
        return int(np.argmax(logits))
    cdf = np.cumsum(softmax(logits))
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1]), len(cdf) - 1))


def env_action(index, env):
    """An action index as the Python int env.step expects (Discrete spaces may start above 0)."""
    return int(index) + int(env.action_space.start)


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
def init_state(rng, sizes, cfg):
    """The learner's arrays: parameters, target net, log(1/beta) and their Adam moments; and
    what epistemic_weight_at() needs of the past: the first episode's return and the step at
    which a return first differed from it (None until then)."""
    theta, _ = init_params(rng, sizes)
    log_alpha = np.array([-np.log(cfg.precision)], dtype=np.float32)  # alpha = 1/beta
    return {"theta": theta, "target_theta": theta[efe_slice(sizes)].copy(), "log_alpha": log_alpha,
            "adam_theta": adam_init(theta), "adam_log_alpha": adam_init(log_alpha),
            "first_return": None, "reward_step": None}


def precision_of(state):
    """beta = 1/alpha = exp(-log alpha), the precision the learner holds now."""
    return float(np.exp(-state["log_alpha"][0]))


def training_batch(buf, rng, cfg):
    """A replayed minibatch, with the transition model's target d under the current statistics."""
    batch = buffer_sample(buf, rng, cfg.batch_size)
    batch["delta"] = transition_target(batch["s"], batch["s_next"], buf["delta_stats"], cfg.epistemic)
    return batch


def update(params, target, state, batch, cfg, n_actions, weight):
    """One minibatch update of all three networks and of the precision; returns the metrics.
    batch["delta"] is the transition model's target, `weight` the epistemic weight lambda_t.

    What autograd must not differentiate (the EFE target y, G in the policy loss) is computed
    first as plain arrays; then each loss is differentiated once and one Adam step on the flat
    theta updates f, G and q together."""
    s, s_next, delta = batch["s"], batch["s_next"], batch["delta"]  # (batch, obs_dim)
    a_onehot = one_hot(batch["a"], n_actions)  # (batch, n_actions)
    beta = precision_of(state)
    eps = prediction_error(params["transition"], s, a_onehot, delta)  # (batch,)
    e = epistemic_value(eps, s.shape[1], cfg.epistemic)  # (batch,)
    logits_next = mlp(params["policy"], s_next)  # (batch, n_actions)
    heads = efe_head_names(cfg)
    found = state["reward_step"] is not None
    mix = value_mix(heads, weight, found)
    v_next = bootstrap_value(efe_heads(target, s_next, n_actions), logits_next, cfg.bootstrap, mix)  # (batch, heads)
    y = head_targets(batch["r"], e, batch["terminated"], v_next, cfg.gamma, weight, heads)  # (batch, heads)
    g = efe_value(efe_heads(params["efe"], s, n_actions), mix)  # (batch, n_actions)

    loss_t, grad_t = transition_loss_and_grad(params["transition"], s, a_onehot, delta)
    learning = np.array(heads_learning(heads, found), dtype=np.float32)  # (heads,)
    loss_g, grad_g = efe_loss_and_grad(params["efe"], s, a_onehot, y, learning)
    loss_q, grad_q = policy_loss_and_grad(params["policy"], s, g, beta)
    flat_grad = np.concatenate([x.ravel() for grads in (grad_t, grad_g, grad_q) for W_b in grads for x in W_b])
    adam_step(state["theta"], flat_grad, state["adam_theta"], cfg.learning_rate)

    h = entropy(logits_next)  # (batch,) the policy's entropy on replayed states
    if cfg.learn_precision:
        target_h = cfg.target_entropy * np.log(n_actions)
        grad_log_alpha = precision_gradient(h, target_h)
        adam_step(state["log_alpha"], grad_log_alpha, state["adam_log_alpha"], cfg.precision_learning_rate)
    return {"transition_loss": float(loss_t), "efe_loss": float(loss_g), "policy_loss": float(loss_q),
            "entropy": float(np.mean(h)), "epistemic_bonus": float(weight * np.mean(e))}


# epistemic_bonus is the mean lambda_t * epistemic value of a replayed transition: what the
# epistemic term adds per step, to set beside the reward.
UPDATE_METRICS = ("transition_loss", "efe_loss", "policy_loss", "entropy", "epistemic_bonus")
LOG_COLUMNS = ("kind", "step", "episode", "episode_return", "episode_length", "eval_return",
               *UPDATE_METRICS, "precision", "wall_seconds")


def smooth(running, metrics, rate=0.01):
    """Exponential moving average of each update metric (over roughly the last 1/rate updates)."""
    for key in UPDATE_METRICS:
        old = running[key]
        running[key] = metrics[key] if np.isnan(old) else old + rate * (metrics[key] - old)


def check_finite(metrics, state, step, cfg):
    """Stop, rather than train on NaN, when a loss or the precision is no longer finite."""
    values = {key: metrics[key] for key in ("transition_loss", "efe_loss", "policy_loss")}
    values["precision"] = precision_of(state)
    for name, value in values.items():
        if not np.isfinite(value):
            kept = f"; {cfg.save} keeps the last good checkpoint" if cfg.save and os.path.exists(cfg.save) else ""
            raise StopTraining(f"{name} became {value} at step {step}; training stopped{kept}", 1)


def train(cfg, progress=print, checkpoint=None):
    """Train an agent on cfg.env_id (resuming from `checkpoint`, a load_checkpoint() result);
    returns (params, history).

    params: {"transition" | "efe" | "policy": [(W, b), ...]}. history: a dict of lists, one entry
      per finished training episode: episode_step, episode_return, episode_length;
      per evaluation: eval_step, eval_return (mean over cfg.eval_episodes), eval_train_seconds;
      per progress line: step, the UPDATE_METRICS (moving averages), precision, steps_per_second.
    `progress` receives each progress line as a string (None: silent). Writes cfg.log and
    cfg.save when set. Raises UsageError on bad input, StopTraining on Ctrl-C or a NaN."""
    check_config(cfg)
    check_output_paths(cfg)
    env = make_env(cfg.env_id, cfg.env_kwargs)
    obs_dim, n_actions = space_sizes(env)
    sizes = network_sizes(obs_dim, n_actions, cfg)
    if checkpoint is None:
        rng = np.random.default_rng(cfg.seed)
        state, buf, start = init_state(rng, sizes, cfg), buffer_init(cfg.buffer_size, obs_dim), 0
    else:
        state, buf, rng, start = restore(checkpoint, cfg, sizes)
        if start >= cfg.total_steps:
            raise UsageError(f"the checkpoint is at step {start}; pass --total-steps above it to train on, "
                             "or --eval-only to evaluate it")
    params = param_views(state["theta"], sizes)
    target = mlp_views(state["target_theta"], sizes["efe"])  # the target net Gbar
    efe = efe_slice(sizes)

    # Seeding: the env once (offset by the step count when resuming), its action space, and one
    # generator, rng, for everything else (initial weights, actions, minibatches).
    obs, _ = env.reset(seed=cfg.seed + start)
    env.action_space.seed(cfg.seed + start)

    history = {key: [] for key in ("episode_step", "episode_return", "episode_length", "eval_step",
                                   "eval_return", "eval_train_seconds", "step", *UPDATE_METRICS,
                                   "precision", "steps_per_second")}
    s, ep_return, ep_length = encode(obs, env.observation_space), 0.0, 0
    running = dict.fromkeys(UPDATE_METRICS, float("nan"))
    clock, eval_seconds, last_line = time.perf_counter(), 0.0, (start, 0.0)
    done_steps = start
    log = open_log(cfg.log)

    def log_row(**row):  # a CSV row, completed with the current metrics
        write_log_row(log, {**running, "precision": precision_of(state), "wall_seconds": round(time.perf_counter() - clock, 3), **row})

    try:
        for step in range(start + 1, cfg.total_steps + 1):
            a = act(params["policy"], s, rng)
            obs, r, terminated, truncated, _ = env.step(env_action(a, env))
            s_next = encode(obs, env.observation_space)
            buffer_add(buf, s, a, r, s_next, terminated)  # truncation is not stored: s' has a future
            done_steps = step  # what a checkpoint written on Ctrl-C counts
            s, ep_return, ep_length = s_next, ep_return + float(r), ep_length + 1
            if terminated or truncated:
                history["episode_step"].append(step)
                history["episode_return"].append(ep_return)
                history["episode_length"].append(ep_length)
                log_row(kind="episode", step=step, episode=len(history["episode_return"]),
                        episode_return=ep_return, episode_length=ep_length)
                if state["first_return"] is None:
                    state["first_return"] = ep_return
                elif state["reward_step"] is None and ep_return != state["first_return"]:
                    state["reward_step"] = step  # the reward has ranked two outcomes
                    switches = {"the epistemic weight is 0": cfg.epistemic_until_reward and cfg.epistemic_weight > 0,
                                "the policy follows G_prag": cfg.pragmatic_head}
                    if progress and any(switches.values()):
                        progress(f"step {step}: an episode returned {ep_return:g}, the first {state['first_return']:g}; "
                                 + " and ".join(k for k, on in switches.items() if on) + " from now on")
                obs, _ = env.reset()
                s, ep_return, ep_length = encode(obs, env.observation_space), 0.0, 0

            if step >= cfg.learning_starts and step % cfg.train_every == 0:
                weight = epistemic_weight_at(step, cfg, state["reward_step"])
                for _ in range(cfg.updates):
                    metrics = update(params, target, state, training_batch(buf, rng, cfg), cfg, n_actions, weight)
                    check_finite(metrics, state, step, cfg)
                    smooth(running, metrics)
                    state["target_theta"] += cfg.tau * (state["theta"][efe] - state["target_theta"])

            last = step == cfg.total_steps
            if (cfg.eval_every and step % cfg.eval_every == 0) or last:
                eval_start = time.perf_counter()
                returns = evaluate(params, cfg.env_id, cfg.eval_episodes, cfg.seed + 10_000, cfg.env_kwargs)
                eval_seconds += time.perf_counter() - eval_start
                history["eval_step"].append(step)
                history["eval_return"].append(float(np.mean(returns)))
                history["eval_train_seconds"].append(time.perf_counter() - clock - eval_seconds)
                log_row(kind="eval", step=step, episode=len(history["episode_return"]), eval_return=np.mean(returns))
            if step % cfg.log_every == 0 or last:
                train_seconds = time.perf_counter() - clock - eval_seconds
                sps = (step - last_line[0]) / max(train_seconds - last_line[1], 1e-9)
                record_progress(history, step, running, precision_of(state), sps, progress)
                last_line = (step, train_seconds)
            if cfg.save and (step % cfg.save_every == 0 or last):
                save_checkpoint(cfg.save, cfg, step, sizes, state, buf, rng)
    except KeyboardInterrupt:
        where = ""
        if cfg.save:
            save_checkpoint(cfg.save, cfg, done_steps, sizes, state, buf, rng)
            where = f"; checkpoint saved to {cfg.save}"
        raise StopTraining(f"interrupted at step {done_steps}{where}", 130) from None
    finally:
        env.close()
        if log:
            log.close()

    if progress:
        progress(f"done: {cfg.env_id} seed {cfg.seed} | steps {cfg.total_steps} | "
                 f"episodes {len(history['episode_return'])} | final eval_return {history['eval_return'][-1]:.1f} | "
                 f"train_seconds {history['eval_train_seconds'][-1]:.1f}" + (f" | saved {cfg.save}" if cfg.save else ""))
    return params, history


def record_progress(history, step, running, beta, sps, progress):
    """Append one progress record to history and hand its line to `progress`."""
    record = {"step": step, **running, "precision": float(beta), "steps_per_second": float(sps)}
    for key, value in record.items():
        history[key].append(value)
    if progress:
        recent = history["episode_return"][-20:]
        last_eval = history["eval_return"][-1] if history["eval_return"] else float("nan")
        progress(f"step {step} | episodes {len(history['episode_return'])} | "
                 f"episode_return {np.mean(recent) if recent else float('nan'):.1f} | eval_return {last_eval:.1f} | "
                 + " | ".join(f"{key} {record[key]:.4g}" for key in (*UPDATE_METRICS, "precision"))
                 + f" | steps_per_second {sps:.0f}")


# ---------------------------------------------------------------------------------------------
# Logs and checkpoints
# ---------------------------------------------------------------------------------------------
def open_log(path):
    """The CSV log opened for appending (a header first when the file is new), or None."""
    if not path:
        return None
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    try:
        if not new:
            with open(path, newline="") as f:
                if next(csv.reader(f), None) != list(LOG_COLUMNS):
                    raise UsageError(f"--log {path}: the file's columns are not this dai.py's; "
                                     "appending would misalign them, so give a new file")
        f = open(path, "a", newline="")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(f"--log {path}: {getattr(e, 'strerror', None) or e}") from None
    if new:
        write_log_row(f, {key: key for key in LOG_COLUMNS})
    return f


def write_log_row(f, row):
    """One CSV row in LOG_COLUMNS order (missing fields empty), flushed so a crash keeps it."""
    if f:
        csv.DictWriter(f, LOG_COLUMNS, restval="").writerow(row)
        f.flush()


CHECKPOINT_VERSION = 3  # 2: the buffer's running statistics of s' - s; 3: epistemic_decay_fraction in the config


def save_checkpoint(path, cfg, step, sizes, state, buf, rng):
    """Everything needed to evaluate or resume, in one .npz (no pickled objects). Written to a
    temporary file in the same folder, then renamed over `path`: a crash or Ctrl-C mid-write
    leaves the previous checkpoint intact."""
    if not np.all(np.isfinite(state["theta"])):
        raise StopTraining(f"parameters are not finite at step {step}; {path} not overwritten", 1)
    arrays = {
        "format_version": np.array(CHECKPOINT_VERSION),
        "config": np.array(json.dumps({k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_OPTIONS})),
        "env_id": np.array(cfg.env_id),
        "obs_dim": np.array(sizes["efe"][0]),
        "n_actions": np.array(sizes["policy"][-1]),
        "step": np.array(step),
        "rng_state": np.array(json.dumps(rng.bit_generator.state)),
        "theta": state["theta"], "target_theta": state["target_theta"], "log_alpha": state["log_alpha"],
        "first_return": np.array(np.nan if state["first_return"] is None else state["first_return"]),
        "reward_step": np.array(-1 if state["reward_step"] is None else state["reward_step"]),
    }
    for name in ("adam_theta", "adam_log_alpha"):
        arrays.update({f"{name}_{k}": np.asarray(v) for k, v in state[name].items()})
    arrays.update({f"buffer_{k}": np.asarray(v) for k, v in buf.items() if k != "delta_stats"})
    arrays.update({f"buffer_delta_{k}": np.asarray(v) for k, v in buf["delta_stats"].items()})
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".dai-", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


CHECKPOINT_KEYS = ("config", "env_id", "obs_dim", "n_actions", "step", "rng_state", "theta", "target_theta",
                   "log_alpha", "adam_theta_m", "adam_theta_v", "adam_theta_t", "adam_log_alpha_m",
                   "adam_log_alpha_v", "adam_log_alpha_t", "buffer_s", "buffer_a", "buffer_r", "buffer_s_next",
                   "buffer_terminated", "buffer_index", "buffer_size", "buffer_delta_count", "buffer_delta_mean",
                   "buffer_delta_m2")


def load_checkpoint(path):
    """A checkpoint's arrays; refuses a missing, unreadable, foreign or other-version file.
    allow_pickle=False: loading a checkpoint can never run code."""
    if not os.path.isfile(path):
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            ckpt = {key: data[key] for key in data.files}
    except Exception as e:  # anything a damaged file can raise while being parsed
        raise UsageError(f"{path} is not a readable checkpoint (truncated or not an .npz file: {e})") from None
    if "format_version" not in ckpt:
        raise UsageError(f"{path} is not a dai.py checkpoint (it has no format_version)")
    if int(ckpt["format_version"]) != CHECKPOINT_VERSION:
        raise UsageError(f"{path} is checkpoint format version {int(ckpt['format_version'])}; "
                         f"this dai.py reads version {CHECKPOINT_VERSION}")
    missing = [key for key in CHECKPOINT_KEYS if key not in ckpt]
    if missing:
        raise UsageError(f"{path} is not a complete dai.py checkpoint (missing {', '.join(missing)})")
    return ckpt


def checkpoint_theta(ckpt, cfg, sizes):
    """The checkpoint's parameter vector, refused when made for other sizes than `sizes`."""
    obs_dim, n_actions = sizes["efe"][0], sizes["policy"][-1]
    saved = int(ckpt["obs_dim"]), int(ckpt["n_actions"])
    if saved != (obs_dim, n_actions):
        raise UsageError(f"checkpoint was made for {ckpt['env_id']} (observation size {saved[0]}, {saved[1]} actions); "
                         f"{cfg.env_id} has observation size {obs_dim} and {n_actions} actions")
    saved_heads, heads = efe_head_names(make_config({}, ckpt)), efe_head_names(cfg)
    if saved_heads != heads:  # the same number of heads can mean other things: refuse, do not reinterpret
        raise UsageError(f"checkpoint's EFE heads are {', '.join(saved_heads)}, but epistemic_head and pragmatic_head "
                         f"make {', '.join(heads)}; do not override them when loading")
    expected = n_params(sizes)
    if ckpt["theta"].size != expected:
        raise UsageError(f"checkpoint has {ckpt['theta'].size} parameters, but hidden_size {cfg.hidden_size}, "
                         f"hidden_layers {cfg.hidden_layers} and the EFE heads {', '.join(efe_head_names(cfg))} "
                         f"(set by epistemic_head and pragmatic_head) make {expected}; "
                         "do not override them when loading")
    return ckpt["theta"].astype(np.float32)


def saved_params(ckpt, cfg):
    """The checkpoint's networks, {name: [(W, b), ...]}, checked against cfg.env_id's sizes."""
    check_config(cfg)
    env = make_env(cfg.env_id, cfg.env_kwargs)
    sizes = network_sizes(*space_sizes(env), cfg)
    env.close()
    return param_views(checkpoint_theta(ckpt, cfg, sizes), sizes)


def restore(ckpt, cfg, sizes):
    """(state, buffer, rng, step) to resume training from a checkpoint."""
    theta = checkpoint_theta(ckpt, cfg, sizes)
    if len(ckpt["buffer_a"]) != cfg.buffer_size:
        raise UsageError(f"checkpoint's replay buffer holds {len(ckpt['buffer_a'])} transitions; "
                         f"buffer_size cannot change when resuming (asked for {cfg.buffer_size})")
    capacity, obs_dim = cfg.buffer_size, sizes["efe"][0]
    shapes = {"target_theta": (n_mlp_params(sizes["efe"]),), "adam_theta_m": theta.shape, "adam_theta_v": theta.shape,
              "log_alpha": (1,), "adam_log_alpha_m": (1,), "adam_log_alpha_v": (1,), "buffer_s": (capacity, obs_dim),
              "buffer_s_next": (capacity, obs_dim), "buffer_r": (capacity,), "buffer_terminated": (capacity,),
              "buffer_delta_mean": (obs_dim,), "buffer_delta_m2": (obs_dim,)}
    wrong = [key for key, shape in shapes.items() if ckpt[key].shape != shape]
    if wrong or not 0 <= int(ckpt["buffer_index"]) < capacity or not 0 <= int(ckpt["buffer_size"]) <= capacity:
        raise UsageError(f"checkpoint is inconsistent: {', '.join(wrong) or 'buffer_index or buffer_size'} "
                         "do not fit its networks and buffer")
    adam = lambda name: {"m": ckpt[f"{name}_m"], "v": ckpt[f"{name}_v"], "t": int(ckpt[f"{name}_t"])}
    state = {"theta": theta, "target_theta": ckpt["target_theta"], "log_alpha": ckpt["log_alpha"],
             "adam_theta": adam("adam_theta"), "adam_log_alpha": adam("adam_log_alpha"),
             "first_return": None, "reward_step": None}  # (absent from checkpoints older than epistemic_until_reward)
    if "first_return" in ckpt and np.isfinite(ckpt["first_return"]):
        state["first_return"] = float(ckpt["first_return"])
    if "reward_step" in ckpt and int(ckpt["reward_step"]) >= 0:
        state["reward_step"] = int(ckpt["reward_step"])
    buf = {key: ckpt["buffer_" + key] for key in ("s", "a", "r", "s_next", "terminated")}
    buf.update(index=int(ckpt["buffer_index"]), size=int(ckpt["buffer_size"]))
    buf["delta_stats"] = {"count": int(ckpt["buffer_delta_count"]), "mean": ckpt["buffer_delta_mean"].astype(np.float64),
                          "m2": ckpt["buffer_delta_m2"].astype(np.float64)}
    rng = np.random.default_rng()
    try:
        rng.bit_generator.state = json.loads(str(ckpt["rng_state"]))
    except (ValueError, TypeError, KeyError) as e:
        raise UsageError(f"checkpoint's rng_state is not a NumPy generator state: {e}") from None
    return state, buf, rng, int(ckpt["step"])


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def evaluate(params, env_id, episodes, seed, env_kwargs="", render=False):
    """Returns of `episodes` episodes acting with the mode of q, on a fresh env seeded `seed`."""
    env = make_env(env_id, env_kwargs, render_mode="human" if render else None)
    returns = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        total, done = 0.0, False
        while not done:
            a = act(params["policy"], encode(obs, env.observation_space))
            obs, r, terminated, truncated, _ = env.step(env_action(a, env))
            total, done = total + float(r), terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    env.close()
    return returns


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def check_config(cfg):
    """Refuse nonsense hyperparameters with a one-line reason."""
    problems = [
        (cfg.total_steps < 1, "total_steps must be at least 1"),
        (cfg.hidden_size < 1 or cfg.hidden_layers < 1, "hidden_size and hidden_layers must be at least 1"),
        (not (cfg.learning_rate > 0 and cfg.precision_learning_rate > 0), "learning rates must be > 0"),
        (cfg.batch_size < 1, "batch_size must be at least 1"),
        (cfg.buffer_size < cfg.batch_size, "buffer_size must be at least batch_size"),
        (cfg.learning_starts < 0, "learning_starts must be >= 0"),
        (cfg.train_every < 1 or cfg.updates < 1, "train_every and updates must be at least 1"),
        (not 0 <= cfg.gamma < 1, "gamma must be in [0, 1)"),
        (not 0 < cfg.tau <= 1, "tau must be in (0, 1]"),
        (cfg.epistemic not in ("standardised", "raw"), "epistemic must be 'standardised' or 'raw'"),
        (not 0 <= cfg.epistemic_weight < float("inf"), "epistemic_weight must be >= 0"),
        (not 0 <= cfg.epistemic_decay_fraction < float("inf"), "epistemic_decay_fraction must be >= 0"),
        (cfg.epistemic_head and cfg.pragmatic_head,
         "epistemic_head and pragmatic_head cannot both be set (pragmatic_head is on by default: add --no-pragmatic-head)"),
        (cfg.bootstrap not in ("expectation", "min"), "bootstrap must be 'expectation' or 'min'"),
        (not 0 < cfg.precision < float("inf"), "precision must be > 0"),
        (not 0 < cfg.target_entropy < 1, "target_entropy must be in (0, 1)"),
        (cfg.eval_every < 0 or cfg.eval_episodes < 1, "eval_every must be >= 0 and eval_episodes >= 1"),
        (cfg.log_every < 1 or cfg.save_every < 1, "log_every and save_every must be at least 1"),
    ]
    for bad, message in problems:
        if bad:
            raise UsageError(message)
    parse_env_kwargs(cfg.env_kwargs)


def check_output_paths(cfg):
    """Refuse, before any training, to write where it would fail or overwrite a user's file."""
    for flag, path in (("save", cfg.save), ("log", cfg.log)):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"--{flag} {path}: the folder does not exist")
    resuming_in_place = cfg.load and os.path.exists(cfg.save or "") and os.path.samefile(cfg.save, cfg.load)
    if cfg.save and os.path.exists(cfg.save) and not resuming_in_place:
        raise UsageError(f"--save {cfg.save} already exists; choose another path, or resume from it with --load {cfg.save}")


def check_display():
    """--render needs a screen; on Linux that means DISPLAY or WAYLAND_DISPLAY."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise UsageError("--render needs a display, and none was found (DISPLAY is not set)")


def field_comments():
    """Config field name -> the comment after it in the source: each meaning is written once."""
    try:
        lines = inspect.getsource(Config).splitlines()
    except (OSError, TypeError):  # no source file (e.g. pasted into a REPL)
        return {}
    helps = {}
    for line in lines:
        code, sep, comment = line.partition("#")
        if sep and ":" in code:
            helps[code.split(":")[0].strip()] = comment.strip()
    return helps


def build_parser():
    """A flag per Config field (kebab case), help from the field's comment, env_id positional.
    Defaults are left out of the parsed result, so that only the flags a user gave override a
    loaded checkpoint's config."""
    parser = argparse.ArgumentParser(prog="dai.py", argument_default=argparse.SUPPRESS,
                                     description="Deep active inference (Millidge 2019) on a Gymnasium environment.")
    helps = field_comments()
    parser.add_argument("env_id", help=helps.get("env_id"))
    for field in dataclasses.fields(Config)[1:]:
        flags = ["--" + field.name.replace("_", "-")] + (["--episodes"] if field.name == "eval_episodes" else [])
        text = f"{helps.get(field.name, '')} (default: {field.default!r})"
        if field.type is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, help=text)
        else:
            metavar = {"save": "PATH", "load": "PATH", "log": "PATH", "env_kwargs": "JSON"}.get(field.name)
            parser.add_argument(*flags, type=field.type, help=text, metavar=metavar or field.type.__name__.upper())
    return parser


def make_config(given, checkpoint=None):
    """Config defaults (ADDED_FIELDS' values where a checkpoint's config lacks them), then the
    checkpoint's config (hyperparameters only), then the flags given."""
    try:
        saved = json.loads(str(checkpoint["config"])) if checkpoint is not None else {}
    except json.JSONDecodeError:
        raise UsageError("the checkpoint's config is not valid JSON") from None
    names = {f.name for f in dataclasses.fields(Config)}
    saved = {k: v for k, v in saved.items() if k in names and k not in RUN_OPTIONS}
    absent = ADDED_FIELDS if checkpoint is not None else {}
    return Config(**{**absent, **saved, **given})


def main(argv=None):
    """The command line. Exit codes: 0 done, 1 stopped on a non-finite value, 2 bad input,
    130 interrupted (Ctrl-C), 141 output pipe closed."""
    parser = build_parser()
    try:
        given = vars(parser.parse_args(argv))
    except SystemExit as e:  # argparse has printed --help, or its usage line and the error
        return e.code
    try:
        checkpoint = load_checkpoint(given["load"]) if given.get("load") else None
        cfg = make_config(given, checkpoint)
        if cfg.render:
            check_display()
        if cfg.eval_only:
            if checkpoint is None:
                raise UsageError("--eval-only needs a checkpoint: --load PATH")
            params = saved_params(checkpoint, cfg)
        else:
            params, _ = train(cfg, checkpoint=checkpoint)
        if cfg.eval_only or cfg.render:
            try:
                returns = evaluate(params, cfg.env_id, cfg.eval_episodes, cfg.seed + 10_000, cfg.env_kwargs, cfg.render)
            except Exception as e:  # a window needs pygame and a working display: say which failed
                if not cfg.render:
                    raise
                raise UsageError(f"--render failed: {e}") from None
            print(f"eval_return mean {np.mean(returns):.2f} std {np.std(returns):.2f} over {len(returns)} episodes")
    except UsageError as e:
        print(f"dai.py: error: {e}", file=sys.stderr)
        return 2
    except StopTraining as e:
        print(f"dai.py: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:  # outside training: nothing to save
        print("dai.py: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout was closed by a reader such as `| head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail
        return 141
    return 0


if __name__ == "__main__":
    sys.exit(main())
