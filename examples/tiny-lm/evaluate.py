"""
Held-out evaluation for the tiny-lm example. LOCKED, like prepare.py.

Nightlab runs it in two processes, each in a sandbox of its own (config
`evaluate.command` and `evaluate.model`), after a training run that exits 0:

    python3 evaluate.py           the scorer: the campaign's base commit (no
                                  train.py in its folder), the held-out data,
                                  prepare.evaluate_bpb. It never imports code
                                  the proposer wrote.
    python3 evaluate.py --serve   the model: the candidate's train.py loads the
                                  checkpoint it saved and answers the scorer.
                                  It cannot read the held-out file, the scorer's
                                  code or memory, and has nowhere to keep what
                                  it sees.

They talk over fd 3 only. The scorer sends a batch of contexts (EVAL_STREAMS x
SEQ_LEN characters, each only its own stream's past: see evaluate_bpb) and the
model answers with logits; the scorer takes the softmax and the figure itself.
A model can move the figure only by predicting better. The scorer prints

    ---
    val_bpb:  <the figure that decides keep or discard: the trainer's own print does not count>
    test_bpb: <the held-out figure: recorded for people, never shown to the proposer>

Run by hand (no fd 3), after `python3 train.py`, it scores train.py in-process.
"""

import os
import socket
import struct
import sys

import numpy as np

# the run's output directory, as train.py saw it
CHECKPOINT = os.path.join(os.environ.get("NIGHTLAB_OUTPUT_DIR") or "out", "model.npz")
HEADER = struct.Struct("<II")  # rows, columns of the array that follows (int32 contexts, float32 logits)


def channel():
    """fd 3 as a byte stream, or None when this process was started without one (by hand)."""
    try:
        sock = socket.socket(fileno=3)
    except OSError:
        return None
    return sock.makefile("rwb")


def read_array(f, dtype, rows, cols):
    data = f.read(rows * cols * np.dtype(dtype).itemsize)
    if len(data) != rows * cols * np.dtype(dtype).itemsize:
        sys.exit("evaluate.py: the other side closed the channel")
    return np.frombuffer(data, dtype=dtype).reshape(rows, cols)


def serve(f):
    """The model's side: proposer code (train.py) runs here and nowhere near the scorer."""
    sys.path.insert(0, os.getcwd())
    import train  # the model definition (its training runs only under __main__)

    logits_fn = train.load_model(CHECKPOINT)
    while True:
        head = f.read(HEADER.size)
        if len(head) < HEADER.size:
            return
        rows, cols = HEADER.unpack(head)
        x = read_array(f, "<i4", rows, cols)
        out = np.ascontiguousarray(np.asarray(logits_fn(x), dtype="<f4"))
        if out.ndim != 2:
            sys.exit(f"evaluate.py --serve: load_model's logits have shape {out.shape}, expected 2 dimensions")
        f.write(HEADER.pack(*out.shape) + out.tobytes())
        f.flush()


def remote_model(f, vocab_size):
    """logits_fn for evaluate_bpb that asks the model process; reads no more than a right answer's size."""
    def logits_fn(x):
        x = np.ascontiguousarray(x, dtype="<i4")
        f.write(HEADER.pack(*x.shape) + x.tobytes())
        f.flush()
        head = f.read(HEADER.size)
        if len(head) < HEADER.size:
            sys.exit("evaluate.py: the model process ended before answering")
        rows, cols = HEADER.unpack(head)
        if (rows, cols) != (x.shape[0], vocab_size):
            sys.exit(f"evaluate.py: the model answered shape {(rows, cols)}, expected {(x.shape[0], vocab_size)}")
        return read_array(f, "<f4", rows, cols)
    return logits_fn


def main():
    f = channel()
    if "--serve" in sys.argv[1:]:
        if f is None:
            sys.exit("evaluate.py --serve: no channel on fd 3 (Nightlab starts this beside the scorer)")
        serve(f)
        return
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from prepare import VOCAB_SIZE, evaluate_bpb

    if f is not None:
        logits_fn = remote_model(f, VOCAB_SIZE)
    else:
        # By hand: the model in this process (what Nightlab never does).
        if not os.path.exists(CHECKPOINT):
            sys.exit(f"evaluate.py: no checkpoint at {CHECKPOINT}: train.py must call save_checkpoint(CHECKPOINT) after training")
        import train
        logits_fn = train.load_model(CHECKPOINT)
    val_bpb = evaluate_bpb(logits_fn, split="val")
    test_bpb = evaluate_bpb(logits_fn, split="test")
    sys.stdout.flush()
    # The summary block is the last thing printed; os._exit skips any exit handler.
    os.write(1, f"---\nval_bpb:          {val_bpb:.6f}\ntest_bpb:         {test_bpb:.6f}\n".encode())
    os._exit(0)


if __name__ == "__main__":
    main()
