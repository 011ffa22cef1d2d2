// How a run ended, in one word and one line, from facts only the worker saw: the exit, the signal,
// who killed it, and the figures in the final summary block of the right process's own output.
import type { RunOutcome } from '../common/shared';
import { looksOutOfMemory } from '../lib/metrics';
import { bounded, readEnd, type KillReason } from '../lib/supervise';

/** Every attempt's output starts with a line beginning with this. */
export const ATTEMPT_HEADER = '=== nightlab ';
/** The summary block is at the end; read only this much of a long log to find it. */
const SUMMARY_BYTES = 64 * 1024;
const TAIL_LINES = 50;
/** The log tail a fix proposal reads. */
const TAIL_CHARS = 4_000;
/** A reason's length in records and history: a run's own words are cut to this. */
export const MAX_REASON_CHARS = 1_000;

/**
 * How a run ended. `metricProblem` (from checkMetric: the metric printed twice, or a malformed
 * metric line) makes a run that exited 0 a crash; `metricSource` says whose output the metric was
 * read from when it is not the trainer's.
 */
export function classify(r: {
  exitCode: number | null;
  signal: string | null;
  killedFor: KillReason | null;
  /** Why it was stopped early (the early stop's evidence). */
  stoppedFor?: string | null;
  metric: number | null;
  tail: string;
  timeoutSec: number;
  command: string;
  metricName: string;
  metricProblem?: string | null;
  metricSource?: 'evaluation';
}): { outcome: RunOutcome; reason: string } {
  if (r.killedFor === 'stopped') return { outcome: 'stopped', reason: r.stoppedFor ?? 'stopped early' };
  if (r.killedFor === 'timeout')
    return { outcome: 'timeout', reason: `killed after the hard timeout of ${r.timeoutSec} s` };
  if (r.exitCode === 127)
    return { outcome: 'crash', reason: bounded(`command not found (exit 127): ${r.command}`, MAX_REASON_CHARS) };
  if (
    r.exitCode !== 0 &&
    (looksOutOfMemory(r.tail) || r.exitCode === 137 || (r.signal === 'SIGKILL' && r.exitCode === null))
  ) {
    return {
      outcome: 'oom',
      reason: `out of memory${r.signal ? ` (${r.signal})` : ''}: ${lastMeaningfulLine(r.tail)}`,
    };
  }
  if (r.exitCode !== 0)
    return { outcome: 'crash', reason: `exit ${r.exitCode ?? r.signal}: ${lastMeaningfulLine(r.tail)}` };
  if (r.metricProblem)
    return {
      outcome: 'crash',
      reason: bounded(
        r.metricSource ? `${r.metricProblem} (in the evaluation's output)` : r.metricProblem,
        MAX_REASON_CHARS,
      ),
    };
  if (r.metric === null) {
    return {
      outcome: 'no-metric',
      reason: r.metricSource
        ? `the evaluation exited 0 but printed no ${r.metricName} in its final summary block`
        : `exited 0 but printed no ${r.metricName} in its final summary block`,
    };
  }
  return { outcome: 'ok', reason: '' };
}

/** The output of a log's last attempt (from its header line on): an earlier attempt's summary never counts. */
export function lastAttemptOf(logPath: string): string {
  const text = readEnd(logPath, SUMMARY_BYTES);
  return text.slice(Math.max(0, text.lastIndexOf(ATTEMPT_HEADER)));
}

/** The end of a run's output, bounded, for a fix proposal. */
export function tailOf(summary: string): string {
  return summary
    .split('\n')
    .slice(-TAIL_LINES - 1)
    .join('\n')
    .slice(-TAIL_CHARS);
}

export function lastMeaningfulLine(tail: string): string {
  const line = tail
    .split('\n')
    .map((l) => l.replace(/[\u0000-\u001f\u007f-\u009f]+/g, ' ').trim())
    .filter((l) => l && !l.startsWith('==='))
    .at(-1);
  return line?.slice(0, 200) ?? '(no output)';
}
