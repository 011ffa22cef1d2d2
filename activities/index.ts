// The orchestrator's activities (CPU work beside the workflow): propose, record, move the branch.
// They come from a factory taking their collaborators, so tests pass real ones in.
import { createPromotionActivities } from './promotion';
import { duplicateOf, engineMove, fallbackMove, reuseRecord } from './search';
import { moveOf } from '../common/search';
import { commitFacts, experimentName } from '../lib/ideas';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import type { CampaignConfig } from '../common/config';
import {
  experimentRef,
  type ExperimentRecord,
  type MoveFacts,
  type ProposeArgs,
  type Proposal,
  type RunRecord,
} from '../common/shared';
import {
  ProposalRejected,
  buildContext,
  renderContext,
  withFreshRecords,
  type Proposer,
  type ProposerContext,
} from '../proposers/context';
import {
  applyChange,
  checkoutWorktree,
  commitFiles,
  commitMessage,
  commitTree,
  commitWorktree,
  compareAndSwapRef,
  git,
  mergeChange,
  oneAtATime,
  treesOf,
  readRef,
  removeWorktree,
  setRef,
  showFiles,
} from '../lib/git';
import { bounded, privateDir, writePrivate } from '../lib/supervise';
import { appendExperiment, appendRejection, appendRun, cleanDescription, readLedger } from '../lib/ledger';
import { mutateProposer } from '../proposers/mutate';
import { commandProposer } from '../proposers/command';
import { MAX_REJECTION_CHARS, preflight } from './preflight';
import { readRecords } from './records';
import { moveToCurrentVersion } from './versioning';

const PROPOSE_HEARTBEAT_MS = 20_000;
/**
 * Proposals are checked against the trained and in-flight files and claimed (their ref set) one at a
 * time per campaign: two slots must not make the same move, or train the same files, at once.
 */
const claimQueue = oneAtATime();

/** Runs `fn` while heartbeating, so that a long proposal (or the work after it) is not timed out. */
async function heartbeating<T>(args: ProposeArgs, fn: () => Promise<T>): Promise<T> {
  const beat = setInterval(
    () => Context.current().heartbeat({ experiment: args.experiment, attempt: args.attempt }),
    PROPOSE_HEARTBEAT_MS,
  );
  try {
    return await fn();
  } finally {
    clearInterval(beat);
  }
}

export interface ActivityDeps {
  /** Proposers by kind; `mutate` and `command` are built in, `anthropic` is added by the worker. */
  proposers?: Partial<Record<CampaignConfig['proposer']['kind'], Proposer>>;
}

interface ProposalMeta {
  description: string;
  costUsd: number;
  usage?: Proposal['usage'];
  sha: string;
  move?: MoveFacts;
  /** Its files were trained by an earlier experiment: the experiment's record, with that result (no run). */
  reuse?: ExperimentRecord;
}

export function createActivities(deps: ActivityDeps = {}) {
  function proposerFor(config: CampaignConfig, campaignDir: string, repo: string): Proposer {
    const kind = config.proposer.kind;
    if (kind === 'command') {
      const home = path.dirname(path.dirname(campaignDir)); // NIGHTLAB_HOME (campaign directories are <home>/campaigns/<tag>)
      return commandProposer({
        config,
        campaignDir,
        scratchDir: path.join(home, 'proposers', path.basename(campaignDir)),
        protect: [home, repo],
      });
    }
    const p = deps.proposers?.[kind] ?? (kind === 'mutate' ? mutateProposer : undefined);
    if (!p)
      throw ApplicationFailure.nonRetryable(
        `proposer "${kind}" is not available on this worker${kind === 'anthropic' ? ': set ANTHROPIC_API_KEY for the orchestrator worker' : ''}`,
        'ProposerUnavailable',
      );
    return p;
  }

  return {
    /** Creates the campaign directory, the campaign branch and experiment 0's ref (idempotent). */
    async prepareCampaign(args: {
      tag: string;
      repo: string;
      branch: string;
      baseSha: string;
      campaignDir: string;
    }): Promise<void> {
      privateDir(args.campaignDir);
      const branchRef = `refs/heads/${args.branch}`;
      if (!(await readRef(args.repo, branchRef))) await compareAndSwapRef(args.repo, branchRef, args.baseSha, null);
      await compareAndSwapRef(args.repo, experimentRef(args.tag, 0), args.baseSha, null);
    },

    /**
     * One proposal: edits on top of the best commit (or the crashed one, for a fix), preflighted,
     * committed under the experiment's ref. Keyed by (experiment, attempt): a retry returns the
     * commit or rejection that already exists and never pays the proposer twice.
     */
    async propose(args: ProposeArgs): Promise<Proposal> {
      const ref = experimentRef(args.tag, args.experiment);
      const metaFile = path.join(args.campaignDir, 'proposals', `${args.experiment}-${args.attempt}.json`);
      if (existsSync(metaFile)) {
        const meta: ProposalMeta = JSON.parse(readFileSync(metaFile, 'utf8'));
        if (!(await readRef(args.repo, ref))) await setRef(args.repo, ref, meta.sha);
        // A reused result is recorded after its proposal is kept: a retry finishes the record (written once).
        if (meta.reuse) await recordReuse(args, meta.reuse);
        return proposalOf(ref, meta);
      }
      const done = readLedger(args.campaignDir).find(
        (r) => r.kind === 'rejected' && r.experiment === args.experiment && r.attempt === args.attempt,
      );
      if (done && done.kind === 'rejected') {
        const { reason, description, flagged } = done;
        return { kind: 'rejected', reason, description, costUsd: 0, ...(flagged ? { flagged } : {}) };
      }

      const codeSha = args.fix?.sha ?? args.parentSha;
      const ctx = await heartbeating(args, () => buildContext(args));
      // What this proposal was shown, kept for people (a proposer's failures are read against it).
      writePrivate(
        path.join(args.campaignDir, 'proposals', `${args.experiment}-${args.attempt}.context.md`),
        renderContext(ctx),
      );
      const reject = (
        reason: string,
        description: string,
        costUsd: number,
        usage?: Proposal['usage'],
        flagged?: true,
      ): Proposal => {
        reason = bounded(reason, MAX_REJECTION_CHARS);
        const at = new Date().toISOString();
        const row = { tag: args.tag, experiment: args.experiment, attempt: args.attempt, description, reason };
        appendRejection(args.campaignDir, { ...row, costUsd, usage, at, ...(flagged ? { flagged } : {}) });
        return { kind: 'rejected', reason, description, costUsd, usage, ...(flagged ? { flagged } : {}) };
      };

      // Now and then a move of the engine's own instead of the proposer's idea (config `search`; never for a fix).
      const moved =
        args.config.search && !args.fix
          ? await claiming(async (fresh) => {
              const m = await engineMove(args, fresh);
              return m && propose({ ...m, costUsd: 0 });
            })
          : null;
      if (moved) return moved;

      let reply;
      try {
        // An agent may think for many minutes; heartbeats keep a live proposal from being timed out.
        reply = await heartbeating(args, () =>
          proposerFor(args.config, args.campaignDir, args.repo)(ctx, Context.current().cancellationSignal),
        );
      } catch (err) {
        if (err instanceof ProposalRejected) return reject(err.message, '', err.costUsd, err.usage);
        throw err;
      }
      // A move's prefix (`ablate #3: ...`) is the engine's word: a proposer's description never passes for one.
      const said = cleanDescription(reply.description) || 'unnamed proposal';
      const description = moveOf(said) ? `(proposer) ${said}` : said;
      const costUsd = reply.costUsd ?? 0;
      const files = reply.files ?? {};
      // What the edited files held before, at the commit edited and at the best (a fix differs).
      // (The context holds the editable files at the commit edited; preflight rejects any other name.)
      const before: Record<string, string | null> = Object.fromEntries(ctx.editable.map((f) => [f.path, f.content]));
      const atParent =
        codeSha === args.parentSha
          ? before
          : Object.fromEntries(
              (await showFiles(args.repo, args.parentSha, args.config.editable)).map((c, i) => [
                args.config.editable[i],
                c,
              ]),
            );
      const reason = await preflight(files, before, atParent, args.config);
      if (reason) return reject(reason, description, costUsd, reply.usage);

      const message = `${description}\n\nNightlab campaign ${args.tag}, experiment ${args.experiment}${args.fix ? ` (fix of experiment ${args.fix.experiment})` : ''}`;
      const sha = await commitFiles(args.repo, { code: codeSha, parent: args.parentSha, files, message });
      // No GPU time for files trained before: a finished experiment's result is reused; one in flight,
      // or the same settings on this best, goes back to the proposer (its next attempt is told why).
      const { usage } = reply;
      return claiming(async (fresh) => {
        const duplicate = await duplicateOf(args, fresh, sha);
        if (duplicate && 'inFlight' in duplicate) {
          const why = `the same files as experiment ${duplicate.inFlight}, in flight now; propose something else`;
          return reject(why, description, costUsd, usage, true);
        }
        if (duplicate && 'near' in duplicate)
          return reject(
            `a near duplicate: ${duplicate.near}; propose something else`,
            description,
            costUsd,
            usage,
            true,
          );
        if (duplicate && 'crashed' in duplicate) {
          const m = duplicate.crashed;
          const why = `the same files as ${experimentName(m)}, which crashed (${m.description}); propose something else`;
          return reject(why, description, costUsd, usage, true);
        }
        if (!duplicate) return propose({ sha, description, costUsd, usage });
        // Files trained before: a move of the engine's own if one can be made, else the result reused.
        const why = `the proposal (${bounded(description, 200)}) had the same files as ${experimentName(duplicate.finished)}`;
        const m = await fallbackMove(args, fresh, why);
        if (m) return propose({ ...m, costUsd, usage });
        const reuse = await reuseRecord(args, { sha, description, costUsd, of: duplicate.finished });
        const proposal = await propose({ sha, description, costUsd, usage, reuse });
        await recordReuse(args, reuse);
        return proposal;
      });

      /**
       * `claim` on records read now, one proposal of this campaign at a time: what it checks against
       * (experiments in flight, the archive) cannot change before it claims the experiment's ref.
       */
      function claiming<T>(claim: (fresh: ProposerContext) => Promise<T>): Promise<T> {
        return heartbeating(args, () =>
          claimQueue(args.campaignDir, async () => claim(await withFreshRecords(args, ctx))),
        );
      }

      /** The proposal made: under the experiment's ref, its meta written last (a retry returns it, never paying twice). */
      async function propose(meta: ProposalMeta): Promise<Proposal> {
        await setRef(args.repo, ref, meta.sha);
        writePrivate(metaFile, JSON.stringify(meta));
        return proposalOf(ref, meta);
      }
    },

    /**
     * Moves a candidate built on an old best onto the current best: its change (against its
     * parent) is applied on top, and the experiment's ref follows. Null when the change conflicts.
     */
    async rebaseCandidate(args: {
      repo: string;
      campaignDir: string;
      tag: string;
      experiment: number;
      attempt: number;
      sha: string;
      parent: string;
      onto: string;
      ontoExperiment: number;
    }): Promise<string | null> {
      const ref = experimentRef(args.tag, args.experiment);
      const current = await readRef(args.repo, ref);
      if (current && current !== args.sha && (await git(args.repo).raw(['rev-parse', `${current}^`])) === args.onto)
        return current; // a retry
      const original = await commitMessage(args.repo, args.sha);
      const message = `${original}\n(rebased onto ${args.onto.slice(0, 7)})`;
      let sha: string | null;
      // In the object store when git can (a few ms: this is on the way to a GPU after a keep), else in a worktree.
      const tree = await mergeChange(args.repo, args.sha, args.parent, args.onto);
      if (tree !== undefined) {
        sha = tree && (await commitTree(args.repo, tree, args.onto, message));
      } else {
        const worktree = path.join(args.campaignDir, 'worktrees', `e${args.experiment}`);
        await checkoutWorktree(args.repo, worktree, args.onto);
        try {
          sha = (await applyChange(worktree, args.sha)) ? await commitWorktree(worktree, args.onto, message) : null;
        } finally {
          await removeWorktree(args.repo, worktree);
        }
      }
      // A change the best already holds (the same idea, kept meanwhile from another slot) leaves nothing to
      // try: its training would run the best against itself, and a keep of that would be luck.
      const [made, ontoTree] = sha ? await treesOf(args.repo, [sha, args.onto]) : [];
      if (!sha || made === ontoTree) {
        appendRejection(args.campaignDir, {
          tag: args.tag,
          experiment: args.experiment,
          attempt: args.attempt,
          description: original.split('\n')[0],
          reason: sha
            ? `its change is already in kept experiment ${args.ontoExperiment}: rebased onto it, nothing is left to try`
            : `conflicts with kept experiment ${args.ontoExperiment} when rebased onto it`,
          costUsd: 0,
          at: new Date().toISOString(),
        });
        return null;
      }
      await setRef(args.repo, ref, sha);
      return sha;
    },

    /** Keep: the campaign branch moves forward, only from the best commit the workflow knows. */
    async advanceBranch(args: { repo: string; branch: string; from: string; to: string }): Promise<void> {
      if (await compareAndSwapRef(args.repo, `refs/heads/${args.branch}`, args.to, args.from)) return;
      const now = await readRef(args.repo, `refs/heads/${args.branch}`);
      throw ApplicationFailure.nonRetryable(
        `branch ${args.branch} is at ${now?.slice(0, 7)}, expected ${args.from.slice(0, 7)}: it was moved outside Nightlab; reset it to ${args.from.slice(0, 7)} and resume`,
        'BranchMoved',
      );
    },

    /** The record of one experiment: ledger row, results.tsv line, and a git note on its commit. */
    async recordExperiment(args: {
      campaignDir: string;
      repo: string;
      record: ExperimentRecord;
      metricName: string;
      logTail: string;
      runs: RunRecord[];
    }): Promise<void> {
      for (const run of args.runs) appendRun(args.campaignDir, run);
      // What the change is, for the idea archive (read here, where the repository is).
      const idea = await commitFacts(args.repo, args.record.commit, args.record.parent);
      appendExperiment(args.campaignDir, { ...args.record, idea }, args.metricName, args.logTail);
      await noteExperiment(args.repo, args.record, args.metricName);
    },

    /** A page of the campaign's ledger, for a client on another host (the `records` workflow). */
    readRecords,

    ...createPromotionActivities(),

    /** A continued campaign's first step: onto the deployment's current version (Worker Versioning only). */
    moveToCurrentVersion,
  };
}

export type OrchestratorActivities = ReturnType<typeof createActivities>;

/** A proposal as it crosses history, from what was written of it. */
function proposalOf(ref: string, m: ProposalMeta): Proposal {
  const { reuse, ...candidate } = m;
  if (reuse) {
    const { description, costUsd, usage } = m;
    const { status, evidence } = reuse;
    return { kind: 'duplicate', of: reuse.duplicateOf ?? -1, status, description, costUsd, usage, evidence };
  }
  return { kind: 'candidate', ref, ...candidate };
}

/** The record of a reused result: in the ledger and results.tsv (each written once), and its git note. */
async function recordReuse(args: ProposeArgs, row: ExperimentRecord): Promise<void> {
  appendExperiment(args.campaignDir, row, args.config.metric.name, '');
  await noteExperiment(args.repo, row, args.config.metric.name);
}

/** Notes live under their own ref, apart from any notes of the user's: `git log --notes=nightlab`. */
export const NOTES_REF = 'refs/notes/nightlab';

/** A git note on the experiment's commit: its metric and decision beside the commit's description. */
export async function noteExperiment(repo: string, r: ExperimentRecord, metricName: string): Promise<void> {
  const metric = r.metric === null ? 'no metric' : `${metricName} ${r.metric.toFixed(6)}`;
  const text = `nightlab ${r.tag} experiment ${r.experiment}: ${r.status} — ${metric}${r.delta !== null ? ` (${r.delta >= 0 ? '+' : ''}${r.delta.toFixed(6)})` : ''}\n${r.reason}`;
  await git(repo).raw(['notes', `--ref=${NOTES_REF}`, 'add', '-f', '-m', text, r.commit]);
}
