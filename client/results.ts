// The rows `nightlab results` (table and --json) and the report show: each experiment's record,
// beside the figures of every run of its commit (mean, spread, count). A keep was judged against
// the best's figure as its re-runs had re-estimated it (`bestBefore`), and a kept experiment's own
// figure moves as it is re-run while it is the best; both are shown, so that a keep never looks
// like a worse figure. results.tsv keeps autoresearch's format (lib/ledger.ts).
import type { ExperimentRecord, PromotionRecord } from '../common/shared';
import { screeningRuns, type LedgerRow } from '../lib/ledger';
import { groupOf } from '../workflows/decisions';

/** Every run of one commit: those that gave a figure (count, mean, spread) and those that did not. */
export interface RunFigures {
  n: number;
  mean: number | null;
  /** Sample standard deviation; null under two runs. */
  sd: number | null;
  /** Runs that gave no figure: crashed, timed out, printed none. */
  failed: number;
}

export type ResultRow = ExperimentRecord & {
  /** Every run of the experiment's commit so far: its own, and its re-runs while it was the best. */
  figures: RunFigures;
  /** The campaign's best now: the last commit of the chain of keeps (or, that one reverted, the best it replaced). */
  best: boolean;
  /** A keep re-run at the promoted fidelity (config `promote`): does it transfer? */
  promotion?: Pick<PromotionRecord, 'screen' | 'promoted' | 'transfers' | 'evidence' | 'reverted'>;
};

type RunRow = Extract<LedgerRow, { kind: 'run' }>;

/**
 * One row per experiment, in number order. The runs of a commit are the ledger's `run` rows of its
 * experiment and commit (a candidate's runs before a rebase ran another commit: not counted); a
 * ledger without them (older campaigns) gives the record's own figure and run count.
 */
export function resultRows(ledger: readonly LedgerRow[]): ResultRow[] {
  const records = ledger.filter((r): r is Extract<LedgerRow, { kind: 'experiment' }> => r.kind === 'experiment');
  const runs = screeningRuns(ledger);
  const promotions = new Map(ledger.flatMap((r) => (r.kind === 'promotion' ? [[r.experiment, r] as const] : [])));
  const best = bestOf(records, promotions);
  return records
    .map(({ kind: _k, logTail: _t, ...r }) => {
      const p = promotions.get(r.experiment);
      const promotion = p && {
        screen: p.screen,
        promoted: p.promoted,
        transfers: p.transfers,
        evidence: p.evidence,
        reverted: p.reverted,
      };
      return { ...r, figures: figuresOf(r, runs), best: r.experiment === best, ...(promotion ? { promotion } : {}) };
    })
    .sort((a, b) => a.experiment - b.experiment);
}

function figuresOf(record: ExperimentRecord, runs: RunRow[]): RunFigures {
  const own = runs.filter((r) => r.experiment === record.experiment && r.commit === record.commit);
  if (!own.length) {
    const n = record.metric === null ? 0 : (record.runs ?? 1);
    return { n, mean: record.metric, sd: null, failed: record.metric === null ? 1 : 0 };
  }
  const ok = (r: RunRow) => r.outcome === 'ok' && r.metric !== null && Number.isFinite(r.metric);
  const g = groupOf(own.filter(ok).map((r) => r.metric!));
  const sd = g.n > 1 ? Math.sqrt(Math.max(0, g.m2) / (g.n - 1)) : null;
  return { n: g.n, mean: g.n ? g.mean : null, sd, failed: own.length - g.n };
}

/**
 * Each keep is built on the best of its time, so the keeps form a chain from the baseline: the
 * best now is the keep no later keep is built on (whatever order the records were written in).
 */
function bestOf(records: ExperimentRecord[], promotions: Map<number, PromotionRecord>): number | null {
  const kept = records.filter((r) => r.status === 'keep');
  const builtOn = new Set(kept.filter((r) => r.commit !== r.parent).map((r) => r.parent));
  const tips = kept.filter((r) => !builtOn.has(r.commit));
  const tip = tips.at(-1);
  // A tip taken back (promote.gate) has the files of the best it replaced: that one is the best.
  const reverted = tip && promotions.get(tip.experiment)?.reverted;
  if (reverted) return kept.find((r) => r.commit === tip.parent)?.experiment ?? null;
  return tip?.experiment ?? null;
}

/** `2.843343 ±0.0021 (n=3)`: the mean, the spread to two significant digits, the count. */
export function figuresText(f: RunFigures): string {
  const failed = f.failed ? `${f.failed} failed` : '';
  if (f.mean === null) return failed ? `- (${failed})` : '-';
  const digits = (sd: number) => Math.min(12, Math.max(0, 1 - Math.floor(Math.log10(sd))));
  const spread = f.sd === null ? '' : ` ±${f.sd === 0 ? '0' : f.sd.toFixed(digits(f.sd))}`;
  return `${f.mean.toFixed(6)}${spread} (n=${f.n}${failed ? `, ${failed}` : ''})`;
}

/** A signed difference: `+0.001234`, `-0.020000`; empty where there is none. */
export function deltaText(delta: number | null): string {
  return delta === null ? '' : `${delta >= 0 ? '+' : ''}${delta.toFixed(6)}`;
}

/** A row's cells as text, the same in the terminal and in the report. */
export function resultCells(r: ResultRow) {
  return {
    metric: r.metric === null ? '-' : r.metric.toFixed(6),
    vsBest: r.status === 'crash' || r.bestBefore === null ? '' : r.bestBefore.toFixed(6),
    delta: deltaText(r.delta),
    runs: figuresText(r.figures),
    status: r.best ? `${r.status} (best)` : r.status,
    promoted: promotionText(r.promotion),
  };
}

/** A promotion in a few words: `transfers +0.012300`, `no -0.004100, reverted`; empty where there was none. */
function promotionText(p: ResultRow['promotion']): string {
  if (!p) return '';
  const { metric, parent } = p.promoted;
  const delta =
    metric !== null && parent !== null ? ` ${deltaText(metric - parent)}` : metric === null ? ' (crashed)' : '';
  return `${p.transfers === null ? 'no verdict' : p.transfers ? 'transfers' : 'no'}${delta}${p.reverted ? ', reverted' : ''}`;
}

/** What the columns beside the record mean, for the foot of a table: [column, meaning]. */
export function resultsLegend(metricName: string, promoting = false): [string, string][] {
  const legend: [string, string][] = [
    [metricName, 'the figure the decision used'],
    ['vs best', "the best's figure it was judged against, as the best's re-runs had re-estimated it"],
    ['all runs', "mean ±spread (n) of every run of its commit, a kept one's re-runs as the best included"],
    ['promoted', 'a keep at the promoted fidelity: whether it beats the best it replaced there too, and by how much'],
  ];
  return promoting ? legend : legend.filter(([k]) => k !== 'promoted');
}
