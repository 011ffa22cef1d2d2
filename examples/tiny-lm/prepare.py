"""
Fixed data, splits and evaluation for the tiny-lm example. LOCKED: the agent
edits train.py only, so that every experiment is scored by the same code.

The corpus is Tiny Shakespeare (see data/README.md), modelled one character at
a time. Splits are contiguous slices of the text, fixed here so they can never
drift between runs:

    train: first 90%    val: next 5%      (data/input.txt)
    test:  last 5%                        (data/heldout/test.txt, held out)

The test split lives in a file of its own so that it can be hidden from the
training run: Nightlab's sandbox makes data/heldout/ unreadable to train.py,
and only the locked evaluation (evaluate.py) reads it, after training. Its
figure is recorded for people and never shown to the proposer.

Usage from train.py:

    from prepare import TIME_BUDGET, TOKEN_BUDGET, SEQ_LEN, VOCAB_SIZE, load_split, evaluate_bpb
"""

import math
import os

import numpy as np

# ---------------------------------------------------------------------------
# Constants (fixed: changing them changes what val_bpb means)

MAX_TIME_BUDGET = 20.0   # hard cap on training seconds, whatever the environment says
TIME_BUDGET = 15.0       # training seconds (startup and evaluation excluded)
TOKEN_BUDGET = 1_200_000 # training characters; the default train.py reaches it well before TIME_BUDGET,
                         # so a default run stops on a count, not a clock, and is reproducible
SEQ_LEN = 32             # longest context (in characters) a model may look at when predicting the next one
EVAL_CHARS = 40_000      # characters of the split scored by evaluate_bpb (val has ~55.8k)
EVAL_STREAMS = 64        # evaluate_bpb walks the scored text as this many streams side by side

# Tests shorten runs through the environment; no setting can push the time budget past the hard cap.
TIME_BUDGET = min(float(os.environ.get("TINYLM_TIME_BUDGET", TIME_BUDGET)), MAX_TIME_BUDGET)
TOKEN_BUDGET = int(float(os.environ.get("TINYLM_TOKEN_BUDGET", TOKEN_BUDGET)))

_HERE = os.path.dirname(os.path.abspath(__file__))
DATA_PATH = os.path.join(_HERE, "data", "input.txt")                # train + val
HELDOUT_PATH = os.path.join(_HERE, "data", "heldout", "test.txt")   # test: read only when scored
VAL_CHARS = 55_769  # the last 5% of the full text before the test split

# ---------------------------------------------------------------------------
# Data: read once, character vocabulary over train + val (all 65 symbols of the text)

with open(DATA_PATH, "r", encoding="utf-8") as f:
    TEXT = f.read()

CHARS = sorted(set(TEXT))
VOCAB_SIZE = len(CHARS)
STOI = {ch: i for i, ch in enumerate(CHARS)}
ITOS = {i: ch for i, ch in enumerate(CHARS)}

_ALL = np.array([STOI[ch] for ch in TEXT], dtype=np.int32)
_N_TRAIN = len(_ALL) - VAL_CHARS
# (start, end) offsets of each split in the text (test follows val, in its own file)
_BOUNDS = {
    "train": (0, _N_TRAIN),
    "val": (_N_TRAIN, len(_ALL)),
}
# bytes per character, so bits per byte stays correct even if the text were not ASCII
_BYTES = np.array([len(ch.encode("utf-8")) for ch in CHARS], dtype=np.int64)


def encode(s):
    return [STOI[ch] for ch in s]


def decode(ids):
    return "".join(ITOS[int(i)] for i in ids)


def _with_test():
    """The train + val ids followed by the test ids, and the test bounds. Only evaluate.py gets here."""
    try:
        with open(HELDOUT_PATH, "r", encoding="utf-8") as f:
            test = f.read()
    except OSError as e:
        raise PermissionError(f"the test split is held out ({HELDOUT_PATH}: {e.strerror}); only the locked evaluation reads it") from None
    unknown = sorted(set(test) - set(STOI))
    if unknown:
        raise ValueError(f"the test split has characters outside the vocabulary: {unknown!r}")
    ids = np.array([STOI[ch] for ch in test], dtype=np.int32)
    return np.concatenate([_ALL, ids]), (len(_ALL), len(_ALL) + len(ids))


def load_split(split):
    """Token ids (int32 array) of 'train' or 'val'. The test split is only reachable through evaluate_bpb."""
    if split not in ("train", "val"):
        raise ValueError(f"load_split: split must be 'train' or 'val', got {split!r}")
    start, end = _BOUNDS[split]
    return _ALL[start:end].copy()


# ---------------------------------------------------------------------------
# Evaluation: the ground truth metric. Do not reimplement it in train.py.

def evaluate_bpb(logits_fn, split="val"):
    """
    Mean cross-entropy of the next character, in bits per byte, over EVAL_CHARS
    characters of `split` ('val', or 'test' for held-out scoring).

    The scored text is cut into EVAL_STREAMS streams, each preceded by SEQ_LEN
    characters that are context only (never scored), and the streams are walked
    in lockstep: call j asks for the j-th target of every stream. logits_fn(x)
    gets x: int32 array [EVAL_STREAMS, SEQ_LEN], the SEQ_LEN characters that
    precede each target (x[:, -1] is the one right before it), and must return
    unnormalised logits [EVAL_STREAMS, VOCAB_SIZE]. The softmax is taken here, in
    float64, so a model cannot score itself with unnormalised probabilities.

    Why lockstep streams: a model is never shown a character it has not yet
    predicted. Every context holds only its own stream's earlier characters,
    so a model that runs apart from the scorer (evaluate.py) cannot read a
    target off another row of the same request.
    """
    if split not in ("val", "test"):
        raise ValueError(f"evaluate_bpb: split must be 'val' or 'test', got {split!r}")
    data = _ALL
    if split == "test":
        data, (start, end) = _with_test()
    else:
        start, end = _BOUNDS[split]
    per_stream = min(EVAL_CHARS, end - start - EVAL_STREAMS * SEQ_LEN) // EVAL_STREAMS
    # stream s scores targets first[s] .. first[s] + per_stream - 1; the SEQ_LEN characters before first[s] are its context only
    first = start + SEQ_LEN + np.arange(EVAL_STREAMS) * (SEQ_LEN + per_stream)
    offsets = np.arange(-SEQ_LEN, 0)
    total_nats = 0.0
    total_bytes = 0
    for j in range(per_stream):
        t = first + j
        x = data[t[:, None] + offsets[None, :]]
        y = data[t]
        logits = np.asarray(logits_fn(x), dtype=np.float64)
        if logits.shape != (len(t), VOCAB_SIZE):
            raise ValueError(f"evaluate_bpb: logits_fn returned shape {logits.shape}, expected {(len(t), VOCAB_SIZE)}")
        logits = logits - logits.max(axis=1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total_nats -= logprobs[np.arange(len(t)), y].sum()
        total_bytes += int(_BYTES[y].sum())
    bpb = total_nats / (math.log(2) * total_bytes)
    if not math.isfinite(bpb):
        return float("inf")
    return float(bpb)


if __name__ == "__main__":
    for name, (s, e) in _BOUNDS.items():
        print(f"{name:5s}: {e - s:9,d} chars")
    try:
        _, (s, e) = _with_test()
        print(f"test : {e - s:9,d} chars (held out)")
    except (OSError, ValueError) as err:
        print(f"test : {err}")
    print(f"vocab: {VOCAB_SIZE} chars")
    print(f"budgets: TIME_BUDGET={TIME_BUDGET}s TOKEN_BUDGET={TOKEN_BUDGET:,} SEQ_LEN={SEQ_LEN} EVAL_CHARS={EVAL_CHARS:,}")
    # sanity: a uniform model scores log2(VOCAB_SIZE) bits
    print(f"uniform val_bpb: {evaluate_bpb(lambda x: np.zeros((len(x), VOCAB_SIZE))):.6f} (log2 V = {math.log2(VOCAB_SIZE):.6f})")
