// Reading figures from a run's output. autoresearch prints a summary block after a `---` line:
//   val_bpb:          0.997900
//   peak_vram_mb:     45060.2
// Only the last summary block counts, so a number printed mid-training cannot pose as the result.
// The deciding metric is read strictly (checkMetric): in the final block it must appear once, as
// one finite number; twice, or a line that names it without such a number, fails the run.
import type { MetricSpec } from '../common/shared';

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The text after the last line that is exactly `---`, or the whole text when there is none. */
export function summaryBlock(log: string): string {
  const lines = log.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) if (lines[i].trim() === '---') return lines.slice(i + 1).join('\n');
  return log;
}

/** The value of `key: <number>` in the summary block, or null. */
export function readFigure(log: string, key: string, pattern?: string): number | null {
  const block = summaryBlock(log);
  const re = new RegExp(pattern ?? `^\\s*${escapeRegex(key)}\\s*[:=]\\s*(\\S+)\\s*$`, 'gm');
  let value: number | null = null;
  for (const m of block.matchAll(re)) {
    const x = Number(m[1]);
    value = Number.isFinite(x) ? x : null;
  }
  return value;
}

export function readMetric(log: string, spec: MetricSpec): number | null {
  return readFigure(log, spec.name, spec.pattern);
}

/** The deciding metric of a run, read strictly: a value, or the problem that makes the run a crash. */
export interface MetricReading {
  value: number | null;
  /** "metric printed twice: ..." or "malformed metric line: ..."; null when the block is clean. */
  problem: string | null;
}

const NUMBER = /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;

/**
 * Reads the metric from the final summary block, flagging what would let a run pass off a figure:
 * - the metric printed more than once in the block ("metric printed twice"): which one would count?
 * - a line naming it (`name:` or `name=` at the start of a line; with a custom pattern, a match)
 *   whose value is not one finite number, e.g. `val_bpb: nan`, `val_bpb: 0.9 (ema)`
 *   ("malformed metric line").
 * No line naming the metric gives { value: null, problem: null }: the run printed no metric.
 */
export function checkMetric(log: string, spec: Pick<MetricSpec, 'name' | 'pattern'>): MetricReading {
  const block = summaryBlock(log);
  const values: string[] = [];
  const lines: string[] = [];
  if (spec.pattern) {
    for (const m of block.matchAll(new RegExp(spec.pattern, 'gm'))) {
      values.push((m[1] ?? '').trim());
      lines.push(m[0]);
    }
  } else {
    const re = new RegExp(`^\\s*${escapeRegex(spec.name)}\\s*[:=](.*)$`, 'gm');
    for (const m of block.matchAll(re)) {
      values.push(m[1].trim());
      lines.push(m[0].trim());
    }
  }
  if (values.length === 0) return { value: null, problem: null };
  if (values.length > 1) {
    return {
      value: null,
      problem: `metric printed twice: ${spec.name} appears ${values.length} times in the final summary block (${lines.map((l) => JSON.stringify(clip(l))).join(', ')})`,
    };
  }
  const x = Number(values[0]);
  if (!NUMBER.test(values[0]) || !Number.isFinite(x)) {
    return {
      value: null,
      problem: `malformed metric line: ${JSON.stringify(clip(lines[0]))} (expected ${spec.pattern ? 'the pattern to capture one finite number' : `"${spec.name}: <number>"`})`,
    };
  }
  return { value: x, problem: null };
}

function clip(s: string, max = 80): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/** Signs in a log that the run died of memory, on the GPU or off it. */
export function looksOutOfMemory(logTail: string): boolean {
  return /CUDA out of memory|OutOfMemoryError|out of memory|MemoryError|Cannot allocate memory/i.test(logTail);
}
