// Promotion (config `promote`): does a keep survive a larger scale? Each keep is re-run at the promoted
// fidelity (a longer budget, a deeper model) beside the best it replaced, whose promoted figure is
// measured once and remembered. The ledger records both scales' figures; with `gate`, a keep that
// loses at the larger scale is taken back off the branch by a new commit that says why.
//
//   promoted runs of the keep, and of the best it replaced (unless already measured), in slots
//   transfers: the keep is better at the larger scale too
//   gate and no transfer: a commit with the replaced best's files goes on top of the keep, and is the
//   best from then on (when nothing was kept on top of it meanwhile)
//   record it: the promoted runs and one promotion row
import type { PromotionRecord, RunResult } from '../common/shared';
import { improvement, runFailed } from './decisions';
import type { Lab } from './experiment';
import { runRecord } from './records';
import type { Replaced } from './state';

/** The keep being promoted: its experiment, commit and screening figure. */
export interface Promoted {
  experiment: number;
  sha: string;
  description: string;
  metric: number;
}

export async function promote(lab: Lab, kept: Promoted, replaced: Replaced): Promise<void> {
  const { config, state, steps, tag } = lab;
  const s = state.carry;
  const p = config.promote!;
  // The keep's promoted runs, and the replaced best's unless its figure is known or being measured
  // by another promotion (the keep's are scheduled first).
  const mineRuns = promotedRuns(lab, kept, p.runs);
  state.promoting.set(kept.sha, mineRuns.then(meanOf));
  const known = s.promoted?.[replaced.sha];
  const measuring = known === undefined ? state.promoting.get(replaced.sha) : undefined;
  const theirsRuns =
    known !== undefined || measuring
      ? null
      : promotedRuns(lab, { ...replaced, description: 'the best it replaced' }, p.runs);
  const theirsFigure = theirsRuns?.then(meanOf);
  if (theirsFigure) state.promoting.set(replaced.sha, theirsFigure);
  const [mine, theirs, parent] = await Promise.all([
    mineRuns,
    theirsRuns,
    known !== undefined ? known : (measuring ?? theirsFigure!),
  ]);
  const metric = meanOf(mine);
  s.promoted = { ...s.promoted, [kept.sha]: metric, [replaced.sha]: parent };
  const dir = config.metric.direction;
  // No verdict when neither side gave a figure (the promoted fidelity itself fails: a setting to fix).
  const transfers =
    metric === null && parent === null
      ? null
      : metric !== null && (parent === null || improvement(metric, parent, dir) > 0);
  let evidence = verdictText({ name: config.metric.name, metric, parent, transfers });
  let reverted: string | null = null;
  // Only a keep that is still the best goes back: one kept on top of it since builds on its change.
  if (transfers === false && p.gate && s.best!.sha !== kept.sha)
    evidence += `; not reverted: experiment ${s.best!.experiment} was kept on top of it since`;
  else if (transfers === false && p.gate) {
    const revert = await steps.revertCommit({
      experiment: kept.experiment,
      keep: kept.sha,
      to: replaced.sha,
      evidence,
    });
    if (s.best!.sha === kept.sha) {
      state.revert(revert, replaced);
      s.promoted = { ...s.promoted, [revert]: parent };
      await steps.moveBranch({ experiment: kept.experiment, from: kept.sha, to: revert });
      reverted = revert;
      evidence += `; reverted by ${revert.slice(0, 7)}`;
    } else evidence += `; not reverted: experiment ${s.best!.experiment} was kept on top of it since`;
  }
  const record: PromotionRecord = {
    tag,
    experiment: kept.experiment,
    commit: kept.sha,
    parent: replaced.sha,
    screen: { metric: kept.metric, parent: replaced.metric },
    promoted: { metric, parent, runs: p.runs },
    transfers,
    evidence,
    reverted,
    finishedAt: new Date().toISOString(),
  };
  const runs = [
    ...mine.map((result, run) => runRecord({ tag, experiment: kept.experiment, run, commit: kept.sha, result })),
    ...(theirs ?? []).map((result, run) =>
      runRecord({ tag, experiment: replaced.experiment, run, commit: replaced.sha, result }),
    ),
  ].map((r) => ({ ...r, fidelity: 'promote' as const }));
  await steps.recordPromotion(record, runs);
  state.announce(`experiment ${kept.experiment}: promoted — ${evidence}`);
}

/** `runs` runs of a commit at the promoted fidelity, each in a slot. */
function promotedRuns(
  lab: Lab,
  c: { experiment: number; sha: string; description: string },
  runs: number,
): Promise<RunResult[]> {
  const order = { experiment: c.experiment, sha: c.sha, description: c.description, promote: true };
  return Promise.all(Array.from({ length: runs }, (_, run) => lab.slots.hold(() => lab.steps.run({ ...order, run }))));
}

/** The mean of the runs' figures; null when any of them failed (an idea that crashes at scale does not transfer). */
function meanOf(runs: RunResult[]): number | null {
  if (runs.some(runFailed)) return null;
  return runs.reduce((a, r) => a + r.metric!, 0) / runs.length;
}

function verdictText(v: {
  name: string;
  metric: number | null;
  parent: number | null;
  transfers: boolean | null;
}): string {
  const fig = (x: number | null) => (x === null ? 'a crash' : x.toFixed(6));
  const figures = `${v.name} ${fig(v.metric)} vs ${fig(v.parent)} for the best it replaced`;
  const verdict = v.transfers === null ? 'no verdict (both failed)' : v.transfers ? 'transfers' : 'does not transfer';
  return `${verdict} at the promoted fidelity: ${figures}`;
}
