// How campaigns look in a terminal.
import type { CampaignSnapshot, ExperimentRecord } from '../common/shared';

export function resultsTable(rows: ExperimentRecord[], metricName: string): string {
  const head = ['#', 'commit', metricName, 'delta', 'mem_gb', 'status', 'description'];
  const body = rows.map((r) => [
    String(r.experiment),
    r.commit.slice(0, 7),
    r.metric === null ? '-' : r.metric.toFixed(6),
    r.delta === null ? '' : `${r.delta >= 0 ? '+' : ''}${r.delta.toFixed(6)}`,
    r.memoryGb.toFixed(1),
    r.status,
    r.description.length > 60 ? `${r.description.slice(0, 57)}...` : r.description,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  return [line(head), ...body.map(line)].join('\n');
}

export function statusText(s: CampaignSnapshot): string {
  const best = s.bestMetric === null ? '-' : s.bestMetric.toFixed(6);
  const base = s.baselineMetric === null ? '-' : s.baselineMetric.toFixed(6);
  const budget = [
    s.budget.maxExperiments !== null ? `${s.experiments}/${s.budget.maxExperiments} experiments` : `${s.experiments} experiments`,
    s.budget.maxHours !== null ? `${s.budget.maxHours} h max` : '',
    s.budget.maxCostUsd !== null ? `$${s.costUsd.toFixed(2)}/$${s.budget.maxCostUsd.toFixed(2)}` : s.costUsd ? `$${s.costUsd.toFixed(4)}` : '',
  ].filter(Boolean).join(', ');
  const lines = [
    `campaign ${s.tag}: ${s.state} — ${s.message}`,
    `  ${s.metricName} (${s.direction} is better): baseline ${base}, best ${best}${s.bestCommit ? ` at ${s.bestCommit.slice(0, 7)}` : ''}`,
    `  ${budget}; ${s.kept} kept, ${s.crashes} crashed`,
  ];
  if (s.current) lines.push(`  now: experiment ${s.current.experiment} ${s.current.phase}${s.current.description ? ` — ${s.current.description}` : ''}`);
  if (s.branch) lines.push(`  branch ${s.branch}; records in ${s.campaignDir}`);
  return lines.join('\n');
}
