# Real learning curves on a GPU, for the early-stop rule (bench/real-curves.ts, test/early-stop.test.ts):
# a small char-level GPT on examples/tiny-lm's text, a fixed number of steps, eight configs (the base and
# seven changes: better, worse, a slow starter, a regulariser) and several seeds each. Per run, at every
# 5% of the budget, the smoothed training loss (what autoresearch's progress lines print) and the
# validation loss; the final validation loss on more batches. Needs PyTorch and a CUDA GPU.
#
#   python3 bench/gpu/curves.py CONFIG SEEDS   (seeds from $SEED0, default 0; one JSON line per run appended
#                                              to $OUT/curves-CONFIG-SEED0.jsonl; stops after $DEADLINE s)
#
# test/fixtures/gpu-curves.jsonl holds the runs of one H200 (2026-12-04): the eight configs side by side,
# `DEADLINE=170 python3 bench/gpu/curves.py $c 8 &` for each, values rounded to 5 decimals.
# test/fixtures/gpu-curves-mild.jsonl: the base and the eleven mild changes, on one H200 (2026-12-04):
# bench/gpu/mild.sh.
import json, math, os, sys, time
import torch, torch.nn as nn, torch.nn.functional as F

STEPS, BATCH, CTX = 1500, 64, 128
CONFIGS = {
    "base": {},
    "lr_hi": {"lr": 3e-3},
    "lr_lo": {"lr": 3e-4},
    "warm_long": {"warmup": 0.4},
    "dropout": {"dropout": 0.2},
    "deeper": {"layers": 6},
    "wd0": {"wd": 0.0},
    "narrow": {"dim": 128},
    # Mild changes, the kind most of a campaign's experiments are (test/fixtures/gpu-curves-mild.jsonl).
    "lr_13": {"lr": 1.3e-3},
    "lr_07": {"lr": 7e-4},
    "lr_20": {"lr": 2e-3},
    "wd_05": {"wd": 0.05},
    "wd_20": {"wd": 0.2},
    "warm_10": {"warmup": 0.1},
    "warm_20": {"warmup": 0.2},
    "drop_05": {"dropout": 0.05},
    "layers_5": {"layers": 5},
    "layers_3": {"layers": 3},
    "dim_192": {"dim": 192},
}
DEFAULT = {"lr": 1e-3, "warmup": 0.05, "dropout": 0.0, "layers": 4, "dim": 256, "wd": 0.1}
text = open("examples/tiny-lm/data/input.txt", encoding="utf-8").read()
chars = sorted(set(text)); stoi = {c: i for i, c in enumerate(chars)}
data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
n = int(0.9 * len(data)); train, val = data[:n].cuda(), data[n:].cuda()
V = len(chars)

def batch(src, g):
    ix = torch.randint(len(src) - CTX - 1, (BATCH, 1), generator=g, device="cuda") + torch.arange(CTX, device="cuda")
    return src[ix], src[ix + 1]

class Block(nn.Module):
    def __init__(s, d, p):
        super().__init__(); s.ln1 = nn.LayerNorm(d); s.att = nn.MultiheadAttention(d, 4, dropout=p, batch_first=True)
        s.ln2 = nn.LayerNorm(d); s.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d), nn.Dropout(p))
        s.register_buffer("mask", torch.triu(torch.ones(CTX, CTX, dtype=torch.bool), 1))
    def forward(s, x):
        h = s.ln1(x); x = x + s.att(h, h, h, attn_mask=s.mask, need_weights=False)[0]
        return x + s.mlp(s.ln2(x))

class GPT(nn.Module):
    def __init__(s, c):
        super().__init__(); d = c["dim"]
        s.tok = nn.Embedding(V, d); s.pos = nn.Embedding(CTX, d); s.drop = nn.Dropout(c["dropout"])
        s.blocks = nn.Sequential(*[Block(d, c["dropout"]) for _ in range(c["layers"])]); s.ln = nn.LayerNorm(d); s.head = nn.Linear(d, V)
    def forward(s, x):
        h = s.drop(s.tok(x) + s.pos(torch.arange(x.shape[1], device=x.device)))
        return s.head(s.ln(s.blocks(h)))

@torch.no_grad()
def val_loss(m, batches):
    m.eval(); g = torch.Generator(device="cuda"); g.manual_seed(1234)
    t = sum(F.cross_entropy(m(x).flatten(0, 1), y.flatten()).item() for x, y in (batch(val, g) for _ in range(batches)))
    m.train(); return t / batches

def run(name, seed):
    c = {**DEFAULT, **CONFIGS[name]}
    torch.manual_seed(seed); g = torch.Generator(device="cuda"); g.manual_seed(seed)
    m = GPT(c).cuda(); opt = torch.optim.AdamW(m.parameters(), lr=c["lr"], weight_decay=c["wd"])
    ema, train_curve, val_curve, t0 = None, [], [], time.time()
    for step in range(1, STEPS + 1):
        w = max(1, int(c["warmup"] * STEPS)); lr = c["lr"] * min(1.0, step / w) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / STEPS)))
        for pg in opt.param_groups: pg["lr"] = lr
        x, y = batch(train, g)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(m(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        l = loss.detach().float(); ema = l if ema is None else 0.9 * ema + 0.1 * l
        if step % (STEPS // 20) == 0:
            at = step / STEPS
            train_curve.append({"at": at, "value": ema.item()}); val_curve.append({"at": at, "value": val_loss(m, 8)})
    return {"config": name, "seed": seed, "final": val_loss(m, 48), "train": train_curve, "val": val_curve, "seconds": time.time() - t0}

if __name__ == "__main__":
    T0 = time.time(); name, seeds = sys.argv[1], int(sys.argv[2]); first = int(os.environ.get("SEED0", "0"))
    out = os.path.join(os.environ.get("OUT", "/tmp"), f"curves-{name}-{first}.jsonl")
    for seed in range(first, first + seeds):
        r = run(name, seed)
        with open(out, "a") as f: f.write(json.dumps(r) + "\n")
        print(name, seed, round(r["final"], 4), round(r["seconds"], 1), flush=True)
        if time.time() - T0 > float(os.environ.get("DEADLINE", "1e9")): break
