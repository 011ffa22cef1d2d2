"""
Character-level language model in plain numpy, the file the agent edits.

A makemore-style MLP (Bengio et al. 2003): the last CONTEXT characters are
embedded, concatenated, passed through one tanh hidden layer and a softmax
over the vocabulary. Backprop is written out by hand; the optimiser is AdamW.
Training stops at TOKEN_BUDGET characters or TIME_BUDGET seconds, whichever
comes first, then prepare.evaluate_bpb scores the model on the val split.

The trained parameters are saved to CHECKPOINT, and load_model(path) rebuilds
the model from such a file: the locked evaluate.py imports this module (the
training below runs only under __main__), loads the checkpoint and scores it on
val and on the held-out test split. Keep both working whatever the model is.

Usage: python3 train.py
"""

import time

t_start = time.time()

import math
import os
import resource
import sys

import numpy as np

from prepare import SEQ_LEN, TIME_BUDGET, TOKEN_BUDGET, VOCAB_SIZE, evaluate_bpb, load_split

# ---------------------------------------------------------------------------
# Hyperparameters (edit these directly, no CLI flags)

LEARNING_RATE = 0.001   # peak AdamW learning rate
BATCH_SIZE = 32         # examples (= characters) per step
EMBED_DIM = 8           # size of each character embedding
HIDDEN_DIM = 64         # width of the tanh hidden layer
CONTEXT = 4             # characters of history the model sees (at most SEQ_LEN)
WEIGHT_DECAY = 0.01     # decoupled (AdamW) decay on the weight matrices
INIT_SCALE = 1.0        # multiplies the 1/sqrt(fan_in) init of the weight matrices
WARMDOWN_FRAC = 0.1     # last fraction of the token budget over which the LR decays linearly to 0
SEED = 42

# ---------------------------------------------------------------------------
# Setup

assert 1 <= CONTEXT <= SEQ_LEN, f"CONTEXT must be in [1, {SEQ_LEN}]"
# Nightlab repeats a run with other seeds to measure its noise; NIGHTLAB_SEED (0 on a first run) offsets SEED.
rng = np.random.default_rng(SEED + int(os.environ.get("NIGHTLAB_SEED", "0")))
train_data = load_split("train")

# All parameters live in one flat float32 buffer (the dict holds views into it), so the
# optimiser step is a handful of whole-buffer array ops instead of a Python loop per tensor:
# at this model size the per-op overhead, not the arithmetic, is what costs time.
shapes = {
    "emb": (VOCAB_SIZE, EMBED_DIM),
    "W1": (CONTEXT * EMBED_DIM, HIDDEN_DIM),
    "b1": (HIDDEN_DIM,),
    "W2": (HIDDEN_DIM, VOCAB_SIZE),
    "b2": (VOCAB_SIZE,),
}
num_params = sum(math.prod(s) for s in shapes.values())
flat_params = np.zeros(num_params, dtype=np.float32)
flat_grads = np.zeros(num_params, dtype=np.float32)
decay_mask = np.zeros(num_params, dtype=np.float32)  # 1 where weight decay applies: the matrices, not embeddings or biases


def views(flat):
    out, offset = {}, 0
    for name, shape in shapes.items():
        size = math.prod(shape)
        out[name] = flat[offset:offset + size].reshape(shape)
        offset += size
    return out


params, grads, decay = views(flat_params), views(flat_grads), views(decay_mask)
params["emb"][...] = rng.standard_normal(shapes["emb"])
params["W1"][...] = rng.standard_normal(shapes["W1"]) * INIT_SCALE / math.sqrt(CONTEXT * EMBED_DIM)
# a small output layer starts the model near uniform, so the first steps are not spent undoing confident guesses
params["W2"][...] = rng.standard_normal(shapes["W2"]) * 0.1 * INIT_SCALE / math.sqrt(HIDDEN_DIM)
decay["W1"][...] = 1.0
decay["W2"][...] = 1.0
adam_m = np.zeros_like(flat_params)
adam_v = np.zeros_like(flat_params)
beta1, beta2 = 0.9, 0.99  # Adam moment decays; kept out of the hyperparameter block as values >= 1 diverge


def forward(ctx):
    """ctx: int array [B, CONTEXT] -> logits [B, VOCAB_SIZE], plus the activations the backward pass needs."""
    x = params["emb"][ctx].reshape(len(ctx), CONTEXT * EMBED_DIM)
    h = np.tanh(x @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    return logits, (ctx, x, h)


def loss_and_grads(ctx, y):
    """Mean cross-entropy of the batch; writes the gradients into `grads` (views of flat_grads)."""
    logits, (ctx, x, h) = forward(ctx)
    B = len(y)
    # log-softmax by the max-shift trick: exact, and lets a diverging run show a huge loss instead of overflowing
    logits = logits - logits.max(axis=1, keepdims=True)
    logsumexp = np.log(np.exp(logits).sum(axis=1, keepdims=True))
    loss = (logsumexp[:, 0] - logits[np.arange(B), y]).mean()
    probs = np.exp(logits - logsumexp)
    # softmax + cross-entropy backward in one step: dlogits = (p - onehot) / B
    dlogits = probs
    dlogits[np.arange(B), y] -= 1.0
    dlogits /= B
    grads["W2"][...] = h.T @ dlogits
    grads["b2"][...] = dlogits.sum(axis=0)
    dpre = (dlogits @ params["W2"].T) * (1.0 - h * h)  # tanh' = 1 - tanh^2
    grads["W1"][...] = x.T @ dpre
    grads["b1"][...] = dpre.sum(axis=0)
    dx = (dpre @ params["W1"].T).reshape(B, CONTEXT, EMBED_DIM)
    grads["emb"][...] = 0.0
    np.add.at(grads["emb"], ctx, dx)  # scatter-add: a character may appear several times in a batch
    return float(loss)


def lr_at(progress):
    """Constant LR, then a linear warmdown to 0 over the last WARMDOWN_FRAC of the token budget."""
    if WARMDOWN_FRAC <= 0 or progress < 1.0 - WARMDOWN_FRAC:
        return LEARNING_RATE
    return LEARNING_RATE * max(0.0, (1.0 - progress) / WARMDOWN_FRAC)


def logits_fn(x):
    # evaluate_bpb hands us SEQ_LEN characters of history; this model uses the last CONTEXT of them
    return forward(x[:, -CONTEXT:])[0]


# ---------------------------------------------------------------------------
# Checkpoint: what evaluate.py scores. Nightlab gives each run an empty output directory in
# NIGHTLAB_OUTPUT_DIR (outside the git tree); run by hand, the checkpoint goes to out/ (git-ignored).

CHECKPOINT = os.path.join(os.environ.get("NIGHTLAB_OUTPUT_DIR") or "out", "model.npz")


def save_checkpoint(path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    np.savez(path, flat_params=flat_params)


def load_model(path):
    """The logits function of the model saved at `path` (the same code and hyperparameters as this file)."""
    saved = np.load(path)["flat_params"]
    if saved.shape != flat_params.shape:
        raise ValueError(f"checkpoint {path} has {saved.size} parameters, this model {flat_params.size}")
    flat_params[...] = saved
    return logits_fn


if __name__ == "__main__":
    # ---------------------------------------------------------------------------
    # Training loop

    # every index whose CONTEXT predecessors lie inside the train split can be a target
    targets_low, targets_high = CONTEXT, len(train_data)
    offsets = np.arange(-CONTEXT, 0)

    print(f"params: {num_params:,} | context {CONTEXT} | token budget {TOKEN_BUDGET:,} | time budget {TIME_BUDGET:.1f}s", flush=True)
    t_train = time.time()
    step = 0
    tokens = 0
    smooth_loss = 0.0
    while True:
        idx = rng.integers(targets_low, targets_high, size=BATCH_SIZE)
        ctx = train_data[idx[:, None] + offsets[None, :]]
        y = train_data[idx]

        loss = loss_and_grads(ctx, y)
        # fail fast, as autoresearch does: a diverged run is not worth evaluating
        if math.isnan(loss) or loss > 100:
            print("FAIL", flush=True)
            sys.exit(1)

        lr = lr_at(tokens / TOKEN_BUDGET)
        step += 1
        tokens += BATCH_SIZE
        # AdamW with bias correction, on the whole flat buffer at once
        adam_m *= beta1
        adam_m += (1.0 - beta1) * flat_grads
        adam_v *= beta2
        adam_v += (1.0 - beta2) * (flat_grads * flat_grads)
        flat_params *= 1.0 - (lr * WEIGHT_DECAY) * decay_mask
        flat_params -= (lr / (1.0 - beta1 ** step)) * adam_m / (np.sqrt(adam_v / (1.0 - beta2 ** step)) + 1e-8)

        # single-batch losses swing by +-0.5 at this batch size; log a debiased moving average instead
        smooth_loss = 0.99 * smooth_loss + 0.01 * loss
        elapsed = time.time() - t_train
        if step % 1000 == 0:
            # autoresearch's progress line: Nightlab reads it into the run's learning curve (config `progress`)
            pct = 100.0 * min(1.0, max(tokens / TOKEN_BUDGET, elapsed / TIME_BUDGET))
            loss_avg = smooth_loss / (1.0 - 0.99 ** step)
            print(f"step {step:05d} ({pct:.1f}%) | loss: {loss_avg:.6f} | elapsed {elapsed:.1f}s", flush=True)
        if tokens >= TOKEN_BUDGET or elapsed >= TIME_BUDGET:
            break

    training_seconds = time.time() - t_train

    # ---------------------------------------------------------------------------
    # Evaluation (prepare.evaluate_bpb is the ground truth) and summary

    val_bpb = evaluate_bpb(logits_fn, split="val")
    save_checkpoint(CHECKPOINT)
    total_seconds = time.time() - t_start
    # no GPU here: report the process's peak resident memory instead (ru_maxrss is in KiB on Linux)
    peak_mem_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print("---")
    print(f"val_bpb:          {val_bpb:.6f}")
    print(f"training_seconds: {training_seconds:.1f}")
    print(f"total_seconds:    {total_seconds:.1f}")
    print(f"peak_vram_mb:     {peak_mem_mb:.1f}")
    print("mfu_percent:      0.00")  # no meaningful peak FLOP/s to compare against on a CPU
    print(f"total_tokens_M:   {tokens / 1e6:.1f}")
    print(f"num_steps:        {step}")
    print(f"num_params_M:     {num_params / 1e6:.2f}")
    print("depth:            1")  # hidden layers
