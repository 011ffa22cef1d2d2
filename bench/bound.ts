// The fewest runs any keep rule can spend on bench:noise's two trainers (a change of no effect, and a
// gain of `gain` noise sigmas, half the decisions each) while keeping at most `falseKeep` of the first
// and at least `detect` of the second: the optimal sequential test, computed by dynamic programming.
// It is a bound for rules that learn the best's figure from the best's own runs, kinder than the bench in
// two ways: the noise sigma is known exactly (the rule estimates it, from 3 baseline runs at first), and
// the best's mean rests on `bestRuns` runs from the start (a campaign pays for them once, shared out over
// its experiments; the rule grows them as it goes). A rule that also read the best's figure off the other
// candidates' runs could go below it here, where half the candidates are exactly as good as the best; in a
// campaign nothing says which candidates did nothing, and such a rule would be biased by every harm.
// The test sees the candidate's runs minus the best's mean: their sum S_n after n runs is normal with
// mean n x mu and variance n + n^2 / m (the best's error is shared by every run), and it is Markov in
// (n, S_n). For Lagrange weights (a, c) the DP minimises E[runs] + a P(keep | no effect) + c P(discard |
// gain); bisection on a and c finds the weights whose optimal test meets both rates.

/**
 * Runs per decision of the best test found, and its rates; `bound`: the Lagrangian dual at its weights,
 * which no test meeting both rates can beat (up to the grid's precision).
 */
export interface Bound {
  runs: number;
  falseKeep: number;
  detection: number;
  bound: number;
}

const MOST_RUNS = 16; // a test that has not decided by then discards (the bench's rule decides far sooner)
const STEP = 0.1; // the grid of S_n, in noise sigmas
const WIDTH = 6; // kernels cut at 6 standard deviations
const BISECTIONS = 16;

const normal = (x: number, mean: number, variance: number) =>
  Math.exp(-((x - mean) ** 2) / (2 * variance)) / Math.sqrt(2 * Math.PI * variance);

export function optimalTest(o: { gain: number; falseKeep: number; detect: number; bestRuns: number }): Bound {
  const mu = [0, o.gain];
  const m = o.bestRuns; // Infinity: the best's mean known exactly
  const lo = -WIDTH * Math.sqrt(MOST_RUNS + MOST_RUNS ** 2 / m);
  const hi = o.gain * MOST_RUNS - lo;
  const size = Math.ceil((hi - lo) / STEP) + 1;
  const s = Float64Array.from({ length: size }, (_, i) => lo + i * STEP);
  // The next run's difference given S_n = s under hypothesis j: mean mu_j + (s - n mu_j) / (m + n).
  const shrink = (n: number) => 1 / (m + n);
  const stepVariance = (n: number) => 1 + shrink(n);
  const kernel = (n: number) => {
    const v = stepVariance(n);
    const half = Math.ceil((WIDTH * Math.sqrt(v)) / STEP);
    const k = Float64Array.from({ length: 2 * half + 1 }, (_, i) => normal((i - half) * STEP, 0, v) * STEP);
    return { k, half };
  };
  const kernels = Array.from({ length: MOST_RUNS + 1 }, (_, n) => kernel(n));
  /**
   * Where S_{n+1} lands from grid point i under hypothesis j: the kernel's tap t carries weight k[t] x
   * (1 - frac) to grid point base + t and k[t] x frac to the next one, for t from `from` to `to` (the
   * taps that land on the grid; the mass beyond 6 standard deviations of its edges is dropped).
   */
  const landing = (i: number, n: number, j: number) => {
    const { k, half } = kernels[n];
    const pos = i + (mu[j] + (s[i] - n * mu[j]) * shrink(n)) / STEP - half;
    const base = Math.floor(pos);
    return { k, base, frac: pos - base, from: Math.max(0, -base), to: Math.min(k.length, size - 1 - base) };
  };
  // E[f(S_{n+1}) | S_n = s, j] for every s on the grid, f given on the grid (linear between points).
  const expect = (f: Float64Array, n: number, j: number) => {
    const out = new Float64Array(size);
    for (let i = 0; i < size; i++) {
      const { k, base, frac, from, to } = landing(i, n, j);
      let acc = 0;
      for (let t = from; t < to; t++) acc += k[t] * ((1 - frac) * f[base + t] + frac * f[base + t + 1]);
      out[i] = acc;
    }
    return out;
  };
  const posterior = (n: number) =>
    Float64Array.from(s, (x) => {
      const v = n + (n * n) / m;
      const [g, h] = [normal(x, 0, v), normal(x, n * o.gain, v)];
      return g + h > 0 ? h / (g + h) : x > (n * o.gain) / 2 ? 1 : 0;
    });
  const posteriors = Array.from({ length: MOST_RUNS + 1 }, (_, n) => (n ? posterior(n) : new Float64Array(size)));

  /** The optimal actions for weights (a, c): 0 continue, 1 keep, 2 discard, per run count and grid point. */
  const solve = (a: number, c: number) => {
    const actions: Uint8Array[] = [];
    let next = new Float64Array(size);
    for (let n = MOST_RUNS; n >= 1; n--) {
      const p = posteriors[n];
      const act = new Uint8Array(size);
      const value = new Float64Array(size);
      const [e0, e1] = n < MOST_RUNS ? [expect(next, n, 0), expect(next, n, 1)] : [null, null];
      for (let i = 0; i < size; i++) {
        const keep = a * (1 - p[i]);
        const discard = c * p[i];
        const go = e0 && e1 ? 1 + (1 - p[i]) * e0[i] + p[i] * e1[i] : Infinity;
        const best = Math.min(keep, discard, go);
        act[i] = best === go ? 0 : best === keep ? 1 : 2;
        value[i] = best;
      }
      actions[n] = act;
      next = value;
    }
    return actions;
  };

  /** The rates and mean runs of a policy under hypothesis j: its mass carried forward run by run. */
  const run = (actions: Uint8Array[], j: number) => {
    let mass = Float64Array.from(s, (x) => normal(x, mu[j], 1 + 1 / m) * STEP);
    let [keep, runs] = [0, 0];
    for (let n = 1; n <= MOST_RUNS; n++) {
      const go = new Float64Array(size);
      for (let i = 0; i < size; i++) {
        runs += mass[i];
        if (actions[n][i] === 1) keep += mass[i];
        else if (actions[n][i] === 0) go[i] = mass[i];
      }
      if (n === MOST_RUNS) break;
      // Push the continuing mass one run forward.
      const out = new Float64Array(size);
      for (let i = 0; i < size; i++) {
        if (!go[i]) continue;
        const { k, base, frac, from, to } = landing(i, n, j);
        for (let t = from; t < to; t++) {
          out[base + t] += go[i] * k[t] * (1 - frac);
          out[base + t + 1] += go[i] * k[t] * frac;
        }
      }
      mass = out;
    }
    return { keep, runs };
  };

  // Nested bisection on the log-weights: c (the price of a missed gain) for the detection, and for each
  // c, a (the price of a false keep) for the false-keep rate.
  const rates = (a: number, c: number) => {
    const actions = solve(a, c);
    const [h0, h1] = [run(actions, 0), run(actions, 1)];
    const runs = (h0.runs + h1.runs) / 2;
    // E[runs] + (a/2)(P0(keep) - falseKeep) + (c/2)(detect - P1(keep)): at most the runs of any test
    // that meets both rates, since this policy minimises the weighted sum over all tests.
    const bound = runs + (a / 2) * (h0.keep - o.falseKeep) + (c / 2) * (o.detect - h1.keep);
    return { runs, falseKeep: h0.keep, detection: h1.keep, bound };
  };
  const fitA = (c: number) => {
    let [lo2, hi2] = [-2, 12];
    for (let i = 0; i < BISECTIONS; i++) {
      const mid = (lo2 + hi2) / 2;
      if (rates(Math.exp(mid), c).falseKeep > o.falseKeep) lo2 = mid;
      else hi2 = mid;
    }
    return rates(Math.exp(hi2), c);
  };
  let [lo3, hi3] = [-2, 12];
  for (let i = 0; i < BISECTIONS; i++) {
    const mid = (lo3 + hi3) / 2;
    if (fitA(Math.exp(mid)).detection < o.detect) lo3 = mid;
    else hi3 = mid;
  }
  return fitA(Math.exp(hi3));
}
