// How campaigns look in a terminal.
import type { CampaignSnapshot } from '../common/shared';
import { resultCells, resultsLegend, type ResultRow } from '../client/results';

/**
 * The results table: each experiment's decided figure, the best's figure it was judged against,
 * and every run of its commit (`resultRows`); the current best marked.
 */
export function resultsTable(results: readonly ResultRow[], metricName: string): string {
  // The promoted column only for campaigns that promote (config `promote`).
  const promoting = results.some((r) => r.promotion);
  const head = ['#', 'commit', metricName, 'vs best', 'delta', 'all runs', 'mem_gb', 'status'];
  const body = results.map((r) => {
    const c = resultCells(r);
    const description = r.description.length > 60 ? `${r.description.slice(0, 57)}...` : r.description;
    const cells = [String(r.experiment), r.commit.slice(0, 7), c.metric, c.vsBest, c.delta, c.runs];
    return [...cells, r.memoryGb.toFixed(1), c.status, ...(promoting ? [c.promoted] : []), description];
  });
  head.push(...(promoting ? ['promoted'] : []), 'description');
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  const legend = resultsLegend(metricName, promoting);
  const keyWidth = Math.max(...legend.map(([k]) => k.length));
  const foot = legend.map(([k, text]) => `${k.padEnd(keyWidth)}  ${text}`);
  return [line(head), ...body.map(line), '', ...foot].join('\n');
}

export function statusText(s: CampaignSnapshot): string {
  const best = s.bestMetric === null ? '-' : s.bestMetric.toFixed(6);
  const base = s.baselineMetric === null ? '-' : s.baselineMetric.toFixed(6);
  const budget = [
    s.budget.maxExperiments !== null
      ? `${s.experiments}/${s.budget.maxExperiments} experiments`
      : `${s.experiments} experiments`,
    s.budget.maxHours !== null ? `${s.budget.maxHours} h max` : '',
    s.budget.maxCostUsd !== null
      ? `$${s.costUsd.toFixed(2)}/$${s.budget.maxCostUsd.toFixed(2)}`
      : s.costUsd
        ? `$${s.costUsd.toFixed(4)}`
        : '',
  ]
    .filter(Boolean)
    .join(', ');
  const lines = [
    `campaign ${s.tag}: ${s.state} — ${s.message}`,
    `  ${s.metricName} (${s.direction} is better): baseline ${base}, best ${best}${s.bestCommit ? ` at ${s.bestCommit.slice(0, 7)}` : ''}`,
    `  ${budget}; ${s.kept} kept, ${s.crashes} crashed`,
  ];
  if (s.current)
    lines.push(
      `  now: experiment ${s.current.experiment} ${s.current.phase}${s.current.description ? ` — ${s.current.description}` : ''}`,
    );
  if (s.branch) lines.push(`  branch ${s.branch}; records in ${s.campaignDir}`);
  return lines.join('\n');
}
