// Reading figures from a run's output. autoresearch prints a summary block after a `---` line:
//   val_bpb:          0.997900
//   peak_vram_mb:     45060.2
// Only the last summary block counts, so a number printed mid-training cannot pose as the result.
import type { MetricSpec } from './shared';

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

/** Signs in a log that the run died of memory, on the GPU or off it. */
export function looksOutOfMemory(logTail: string): boolean {
  return /CUDA out of memory|OutOfMemoryError|out of memory|MemoryError|Cannot allocate memory/i.test(logTail);
}
