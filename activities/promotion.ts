// Promotion's activities (config `promote`): the commit that takes back a keep that did not transfer,
// and the promotion's records.
import { experimentRef, type PromotionRecord, type RunRecord } from '../common/shared';
import { commitMessage, commitTree, readRef, setRef, treesOf } from '../lib/git';
import { appendPromotion, appendRun } from '../lib/ledger';

export function createPromotionActivities() {
  return {
    /**
     * A commit with `to`'s files on top of `keep`, its message saying why, under the experiment's ref (so
     * GPU workers fetch it as they fetch the experiment); the branch is moved by advanceBranch. A retry
     * finds the commit it made.
     */
    async revertCommit(args: {
      repo: string;
      tag: string;
      experiment: number;
      keep: string;
      to: string;
      message: string;
    }): Promise<string> {
      const ref = experimentRef(args.tag, args.experiment);
      const [tree] = await treesOf(args.repo, [args.to]);
      const current = await readRef(args.repo, ref);
      if (current && current !== args.keep && (await commitMessage(args.repo, current)) === args.message) {
        if ((await treesOf(args.repo, [current]))[0] === tree) return current;
      }
      const sha = await commitTree(args.repo, tree, args.keep, args.message);
      await setRef(args.repo, ref, sha);
      return sha;
    },

    async recordPromotion(args: { campaignDir: string; record: PromotionRecord; runs: RunRecord[] }): Promise<void> {
      for (const run of args.runs) appendRun(args.campaignDir, run);
      appendPromotion(args.campaignDir, args.record);
    },
  };
}
