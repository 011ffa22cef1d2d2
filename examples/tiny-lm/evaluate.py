"""
Held-out evaluation for the tiny-lm example. LOCKED, like prepare.py.

Nightlab runs it (config `evaluate.command`) after a training run exits 0, in the
same worktree: it loads the checkpoint train.py saved, scores it with
prepare.evaluate_bpb on the val split and on the held-out test split, and prints

    ---
    val_bpb:  <the figure that decides keep or discard: the trainer's own print does not count>
    test_bpb: <the held-out figure: recorded for people, never shown to the proposer>

The model is whatever train.py defines: this script imports train.py (whose
training runs only under __main__) and calls its load_model(CHECKPOINT).

Usage (after `python3 train.py`): python3 evaluate.py
"""

import os
import sys


def main():
    # the run's output directory, as train.py saw it
    checkpoint = os.path.join(os.environ.get("NIGHTLAB_OUTPUT_DIR") or "out", "model.npz")
    if not os.path.exists(checkpoint):
        sys.exit(f"evaluate.py: no checkpoint at {checkpoint}: train.py must call save_checkpoint(CHECKPOINT) after training")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from prepare import evaluate_bpb
    import train  # the model definition

    logits_fn = train.load_model(checkpoint)
    val_bpb = evaluate_bpb(logits_fn, split="val")
    test_bpb = evaluate_bpb(logits_fn, split="test")
    sys.stdout.flush()
    # The summary block is the last thing printed; os._exit skips any exit handler that the
    # imported model code may have registered, so nothing can be printed after it.
    os.write(1, f"---\nval_bpb:          {val_bpb:.6f}\ntest_bpb:         {test_bpb:.6f}\n".encode())
    os._exit(0)


if __name__ == "__main__":
    main()
