// Alarms for people (never for the proposer): keeps whose held-out figure got worse beyond its
// noise, while the deciding figure got better (the campaign may be fitting the validation data, or
// the scoring may have been bent); and gains that looked too good to be true (the workflow flags
// them, confirms them on clean caches, and records why).
import { screeningRuns, type LedgerRow } from '../lib/ledger';
import type { Group } from '../common/shared';
import { groupOf, improvement, noiseSigma } from '../workflows/decisions';

/** Held-out worse by more than this many standard deviations of the difference raises an alarm. */
const HELD_OUT_K = 2;

export interface Alarm {
  experiment: number;
  kind: 'held-out worse' | 'suspect gain' | 'not sandboxed';
  text: string;
}

export interface KeptFigures {
  experiment: number;
  metric: number | null;
  heldOut: number | null;
}

/** The decided and held-out figures of the baseline and every keep, in the order they were kept. */
export function keptFigures(ledger: LedgerRow[]): KeptFigures[] {
  return ledger
    .filter((r): r is Extract<LedgerRow, { kind: 'experiment' }> => r.kind === 'experiment' && r.status === 'keep')
    .map((r) => ({
      experiment: r.experiment,
      metric: r.metric,
      heldOut: typeof r.heldOut === 'number' ? r.heldOut : null,
    }));
}

export function alarms(ledger: LedgerRow[], direction: 'lower' | 'higher'): Alarm[] {
  const out: Alarm[] = [];
  // The held-out figure's own noise: the spread of runs of one commit (an experiment's runs).
  const byExperiment = new Map<number, number[]>();
  for (const r of screeningRuns(ledger)) {
    if (typeof r.heldOut === 'number' && Number.isFinite(r.heldOut))
      byExperiment.set(r.experiment, [...(byExperiment.get(r.experiment) ?? []), r.heldOut]);
  }
  const groups = new Map<number, Group>([...byExperiment].map(([n, xs]) => [n, groupOf(xs)]));
  const sigma = noiseSigma({ ss: 0, dof: 0 }, [...groups.values()]);
  const kept = keptFigures(ledger);
  for (let i = 1; i < kept.length; i++) {
    const [before, now] = [kept[i - 1], kept[i]];
    if (before.heldOut === null || now.heldOut === null) continue;
    const worse = -improvement(now.heldOut, before.heldOut, direction);
    const n1 = groups.get(now.experiment)?.n ?? 1;
    const n0 = groups.get(before.experiment)?.n ?? 1;
    const margin = sigma === null ? 0 : HELD_OUT_K * sigma * Math.sqrt(1 / n1 + 1 / n0);
    if (worse > margin) {
      out.push({
        experiment: now.experiment,
        kind: 'held-out worse',
        text: `kept experiment ${now.experiment}: held-out ${now.heldOut.toFixed(6)} is worse than ${before.heldOut.toFixed(6)} (experiment ${before.experiment}) by ${worse.toFixed(6)}, ${sigma === null ? 'with no held-out noise estimate' : `beyond ${HELD_OUT_K} sigma (${margin.toFixed(6)})`}, while the deciding figure went from ${fmt(before.metric)} to ${fmt(now.metric)}`,
      });
    }
  }
  // Runs that had no sandbox although the config asked for one where possible (auto): nothing held them.
  const bare = ledger.filter(
    (r): r is Extract<LedgerRow, { kind: 'run' }> => r.kind === 'run' && r.isolation === 'none',
  );
  if (bare.length) {
    const which = [...new Set(bare.map((r) => r.experiment))];
    out.push({
      experiment: which[0],
      kind: 'not sandboxed',
      text: `${bare.length} run${bare.length > 1 ? 's' : ''} (experiment${which.length > 1 ? 's' : ''} ${which.slice(0, 10).join(', ')}${which.length > 10 ? ', ...' : ''}) ran without a sandbox: bubblewrap could not run on ${[...new Set(bare.map((r) => r.host))].join(', ')}; nothing held what they could read or write (see the log headers)`,
    });
  }
  for (const r of ledger) {
    if (r.kind === 'experiment' && r.suspect)
      out.push({
        experiment: r.experiment,
        kind: 'suspect gain',
        text: `experiment ${r.experiment} (${r.status}): ${r.suspect}; evidence: ${r.evidence}`,
      });
  }
  return out.sort((a, b) => a.experiment - b.experiment);
}

/** Lines for a terminal: each keep's decided figure beside its held-out one, then the alarms. */
export function alarmLines(ledger: LedgerRow[], direction: 'lower' | 'higher', metricName: string): string[] {
  const kept = keptFigures(ledger);
  const lines: string[] = [];
  if (kept.some((k) => k.heldOut !== null)) {
    lines.push(
      `  kept (${metricName} / held-out): ${kept.map((k) => `${k.experiment}: ${fmt(k.metric)} / ${fmt(k.heldOut)}`).join(', ')}`,
    );
  }
  for (const a of alarms(ledger, direction)) lines.push(`  ALARM ${a.kind}: ${a.text}`);
  return lines;
}

function fmt(x: number | null): string {
  return x === null ? '-' : x.toFixed(6);
}
