import { PRESETS } from '../common/config';
import { experiments, readLedger } from '../lib/ledger';
import { lab, makeRepo, TINY_LM } from './helpers';
const l = await lab();
try {
  const repo = await makeRepo(TINY_LM);
  const preset = PRESETS['tiny-lm'];
  const t0 = Date.now();
  const c = await l.start(repo, {
    ...preset,
    proposer: { kind: 'mutate', seed: 0 },
    budget: { maxExperiments: 4, maxHours: null, maxCostUsd: null },
    run: { ...preset.run!, env: { TINYLM_TOKEN_BUDGET: '300000' } },
  });
  await c.result();
  console.log('total', Date.now() - t0);
  for (const r of readLedger(c.campaignDir))
    if (r.kind === 'run') console.log(r.experiment, r.run, r.outcome, r.seconds, r.metric);
  for (const r of experiments(c.campaignDir))
    console.log('E', r.experiment, r.status, r.runs, r.seconds, r.reason.slice(0, 100));
} finally {
  await l.close();
}
