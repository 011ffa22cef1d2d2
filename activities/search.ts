// The search's part of a proposal (config `search`; common/search.ts decides, lib/ideas.ts reads the
// archive): now and then a move of the engine's own instead of the proposer's idea, and never GPU time
// for files already trained. Exact duplicates of a finished experiment reuse its result; duplicates of
// one still in flight, and the same settings on the same best, are sent back to the proposer.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import {
  chooseMoves,
  fallbackMoves,
  FALLBACK_TRIES,
  nearDuplicate,
  sameTree,
  type IdeaEntry,
  type Move,
  type MoveKind,
} from '../common/search';
import type { ExperimentRecord, MoveFacts, ProposeArgs } from '../common/shared';
import {
  applyChange,
  checkoutWorktree,
  commitFiles,
  commitWorktree,
  removeWorktree,
  showFile,
  showFiles,
} from '../lib/git';
import { preflight } from './preflight';
import { commitFacts, experimentName, isCapped, readSettings, withSettings } from '../lib/ideas';
import { experiments } from '../lib/ledger';
import type { ProposerContext } from '../proposers/context';

/** Attempts of one experiment on which a near duplicate, or one of files in flight or crashed, is sent back. */
const FLAGGED_ATTEMPTS = 2;

/** A candidate the engine made: its commit, description and what move it is. */
export interface MovedCandidate {
  sha: string;
  description: string;
  move: MoveFacts;
}

/**
 * The engine's move for this proposal, when the search draws one: the first of the drawn kind that
 * git can make (a candidate that conflicts, fails preflight or was trained before gives way to the
 * next). Null: the proposer's turn, also when none can be made. Never for a fix.
 */
export async function engineMove(args: ProposeArgs, ctx: ProposerContext): Promise<MovedCandidate | null> {
  const settings = args.config.search;
  if (!settings || args.fix || !ctx.archive) return null;
  const moves = chooseMoves(ctx.archive.entries, {
    best: args.parentSha,
    experiment: args.experiment,
    seed: args.config.proposer.seed,
    settings,
    most: FALLBACK_TRIES,
  });
  return firstMade(args, ctx, moves);
}

/**
 * A move in place of a proposal whose files were trained before (training them again would teach
 * nothing): the first of the possible moves, whatever the shares, that git can make. Null: none
 * (the earlier result is reused). `why` says what the proposal repeated; it leads the move's evidence.
 */
export async function fallbackMove(
  args: ProposeArgs,
  ctx: ProposerContext,
  why: string,
): Promise<MovedCandidate | null> {
  if (!args.config.search || args.fix || !ctx.archive) return null;
  const moves = fallbackMoves(ctx.archive.entries, {
    best: args.parentSha,
    most: FALLBACK_TRIES,
    settings: args.config.search,
  });
  return firstMade(args, ctx, moves, `${why}; instead: `);
}

/** The first of `moves` that can be made, in order; null: none (or the proposer's turn). */
async function firstMade(
  args: ProposeArgs,
  ctx: ProposerContext,
  moves: Move[],
  lead = '',
): Promise<MovedCandidate | null> {
  for (const move of moves) {
    if (move.kind === 'proposer') continue;
    const made = await makeMove(args, ctx, { ...move, evidence: `${lead}${move.evidence}` });
    if (made) return made;
  }
  return null;
}

/** The move's candidate, held to what the proposer's edits are held to (preflight) and never a duplicate. */
async function makeMove(
  args: ProposeArgs,
  ctx: ProposerContext,
  move: Extract<Move, { of: number[] }>,
): Promise<MovedCandidate | null> {
  const message = `${move.description}\n\n${move.evidence}\n\nNightlab campaign ${args.tag}, experiment ${args.experiment}`;
  const sha = await buildMove(args, { kind: move.kind, of: move.of }, ctx.archive?.entries ?? [], message);
  // Strictly: a move is never sent back to anyone, so files in flight or crashed are refused on any attempt.
  if (!sha || (await duplicateOf(args, ctx, sha, true))) return null;
  const editable = args.config.editable;
  const files = Object.fromEntries((await showFiles(args.repo, sha, editable)).map((c, i) => [editable[i], c ?? '']));
  const before = Object.fromEntries(ctx.editable.map((f) => [f.path, f.content]));
  if (await preflight(files, before, before, args.config)) return null;
  return { sha, description: move.description, move: { kind: move.kind, of: move.of, evidence: move.evidence } };
}

/**
 * The move's commit on the best: the changes of `of` applied (combine, revisit) or taken out (ablate),
 * by git; or, where their lines conflict (hyperparameters on adjacent lines), as the settings they set.
 */
async function buildMove(
  args: ProposeArgs,
  move: Pick<MoveFacts, 'kind' | 'of'>,
  entries: IdeaEntry[],
  message: string,
): Promise<string | null> {
  const ideas = move.of.map((n) => entries.find((e) => e.experiment === n));
  if (ideas.some((e) => !e)) return null;
  const found = ideas as IdeaEntry[];
  return (await byGit(args, move.kind, found, message)) ?? bySettings(args, move.kind, found, message);
}

async function byGit(args: ProposeArgs, kind: MoveKind, ideas: IdeaEntry[], message: string): Promise<string | null> {
  // Named for this execution too: a timed-out execution may still be running beside its retry.
  const worktree = path.join(
    args.campaignDir,
    'worktrees',
    `m${args.experiment}-${args.attempt}-${randomBytes(4).toString('hex')}`,
  );
  await checkoutWorktree(args.repo, worktree, args.parentSha);
  try {
    const how = kind === 'ablate' ? 'revert' : 'cherry-pick';
    for (const e of ideas) if (!(await applyChange(worktree, e.commit, how))) return null;
    return await commitWorktree(worktree, args.parentSha, message);
  } finally {
    await removeWorktree(args.repo, worktree);
  }
}

/** The ideas' settings written on the best (their old values, for an ablation); null unless each idea is settings alone. */
async function bySettings(
  args: ProposeArgs,
  kind: MoveKind,
  ideas: IdeaEntry[],
  message: string,
): Promise<string | null> {
  const byFile = new Map<string, Map<string, string>>();
  for (const e of ideas) {
    if (!e.settings.length || !e.touches.every((t) => e.settings.some((s) => s.name === t))) return null;
    for (const s of e.settings) {
      const value = kind === 'ablate' ? s.from : s.to;
      if (value === null || isCapped(value)) return null;
      byFile.set(s.file, (byFile.get(s.file) ?? new Map<string, string>()).set(s.name, value));
    }
  }
  const files: Record<string, string> = {};
  for (const [file, values] of byFile) {
    const content = await showFile(args.repo, args.parentSha, file);
    // An ablation takes out only what the kept change set: a setting a later keep changed again stays.
    const now = readSettings(content ?? '');
    const later = ideas.some((e) => e.settings.some((s) => s.file === file && now.get(s.name) !== s.to));
    if (kind === 'ablate' && later) return null;
    const next = content === null ? null : withSettings(content, values);
    if (next === null) return null;
    files[file] = next;
  }
  return commitFiles(args.repo, { code: args.parentSha, parent: args.parentSha, files, message });
}

/** Whether a candidate's files were trained already: by a finished experiment, or one in flight. */
export async function duplicateOf(
  args: ProposeArgs,
  ctx: ProposerContext,
  sha: string,
  strict = false,
): Promise<{ finished: IdeaEntry } | { crashed: IdeaEntry } | { inFlight: number } | { near: string } | null> {
  const facts = await commitFacts(args.repo, sha, args.parentSha);
  const entries = ctx.archive?.entries ?? [];
  // A fork's parent's keeps are trained again: the fork never had them, and may keep them.
  const inherited = (ctx.archive?.inherited ?? []).filter((e) => e.status !== 'keep');
  // A result, here or in the parent campaign, before a crash of the same files (which may have been the machine's).
  const found = [sameTree(facts.tree, entries), sameTree(facts.tree, inherited)];
  const finished = found.find((e) => e && e.status !== 'crash') ?? found.find((e) => e) ?? null;
  if (finished && finished.status !== 'crash') return { finished };
  // The rest is only flagged: sent back to the proposer on its first attempts, then trained (a proposer
  // with nothing else would otherwise be paused by its rejections).
  if (args.attempt >= FLAGGED_ATTEMPTS && !strict) return null;
  // A crash is not reused (it starts no fix, and may have been the machine's): the proposer is told instead.
  if (finished) return { crashed: finished };
  const running = ctx.inFlight.find((f) => f.tree === facts.tree);
  if (running) return { inFlight: running.experiment };
  // The same settings to the same values on this best; a crash tried nothing, and a fix may retry its idea.
  const tried = entries.filter((e) => e.status !== 'crash');
  const near = args.fix ? null : nearDuplicate(facts.settings, facts.parentTree, tried);
  return near && { near: near.text };
}

/**
 * The record of a proposal whose files experiment `m` trained: a discard with m's figure and no run,
 * saying so. Not written here: the caller keeps it with the proposal first, so a retry writes the same.
 */
export async function reuseRecord(
  args: ProposeArgs,
  c: { sha: string; description: string; costUsd: number; of: IdeaEntry },
): Promise<ExperimentRecord> {
  const m = c.of;
  // The reused experiment's own record (a fork's parent's is in another campaign): its memory and log.
  const earlier = m.campaign ? undefined : experiments(args.campaignDir).find((r) => r.experiment === m.experiment);
  const best = experiments(args.campaignDir)
    .filter((r) => r.commit === args.parentSha)
    .at(-1);
  const bestMetric = best?.metric ?? null;
  const figure = m.metric === null ? '' : ` ${m.metric.toFixed(6)}`;
  const evidence = `the same files as ${experimentName(m)} (${m.status}${figure}): its result reused, no run`;
  const record: ExperimentRecord = {
    tag: args.tag,
    experiment: args.experiment,
    commit: c.sha,
    parent: args.parentSha,
    status: 'discard',
    outcome: 'ok',
    metric: m.metric,
    bestBefore: bestMetric,
    delta: m.metric === null || bestMetric === null ? null : m.metric - bestMetric,
    memoryGb: earlier?.memoryGb ?? 0,
    description: c.description,
    reason: evidence,
    evidence,
    runs: 0,
    seconds: 0,
    logPath: earlier?.logPath ?? '',
    host: '',
    slot: '',
    costUsd: c.costUsd,
    fixOf: args.fix?.experiment ?? null,
    finishedAt: new Date().toISOString(),
    // (An experiment of this campaign; one of a fork's parent is named in the evidence.)
    ...(m.campaign ? {} : { duplicateOf: m.experiment }),
    idea: await commitFacts(args.repo, c.sha, args.parentSha),
  };
  return record;
}
