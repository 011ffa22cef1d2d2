// What a proposer sees, assembled from the ledger by one function: instructions, steering notes,
// the files, a compact history and the best so far. Held-out figures and secrets never enter it.
import type { ExperimentRecord, ProposeArgs, TokenUsage } from '../common/shared';
import { experimentRef } from '../common/shared';
import { DEFAULT_SEARCH, plateauNote, type IdeaEntry } from '../common/search';
import { diffOf, refSubjects, showFiles } from '../lib/git';
import { commitFacts, compactArchive, ideaEntries } from '../lib/ideas';
import { experiments, readLedger } from '../lib/ledger';

export interface FileText {
  path: string;
  content: string;
}

export interface HistoryLine {
  experiment: number;
  status: string;
  metric: number | null;
  delta: number | null;
  description: string;
}

export interface ProposerContext {
  tag: string;
  experiment: number;
  attempt: number;
  seed: number;
  /** The campaign's proposer.model and proposer.effort (used by LLM proposers). */
  model: string;
  effort: 'low' | 'medium' | 'high';
  metric: { name: string; direction: 'lower' | 'higher' };
  instructions: string;
  notes: string[];
  editable: FileText[];
  locked: FileText[];
  history: HistoryLine[];
  best: { experiment: number; metric: number | null; commit: string };
  fix: { experiment: number; description: string; reason: string; diff: string; logTail: string } | null;
  /** Other experiments proposed and not judged yet (queued or training): not to be duplicated. */
  inFlight: { experiment: number; description: string; tree: string }[];
  lastRejection: string | null;
  /** Where the code to edit is: the best commit, or the crashed one for a fix (a command proposer gets a copy). */
  code: { repo: string; sha: string };
  /**
   * The idea archive: every experiment's change (lib/ideas.ts), compacted as `text`; `parentTree`
   * (the best's tree) for near-duplicate checks; `plateau`: the note when no keep came for long.
   */
  archive?: {
    entries: IdeaEntry[];
    /** A fork's parent's entries (`campaign` set): for the text and for duplicates, not for moves. */
    inherited: IdeaEntry[];
    text: string;
    parentTree: string;
    plateau: string | null;
  };
}

/** A proposer's answer: new file contents (or edits made in place in the worktree) and one line. */
export interface ProposerReply {
  description: string;
  files?: Record<string, string>;
  costUsd?: number;
  usage?: TokenUsage;
}

export type Proposer = (ctx: ProposerContext, signal: AbortSignal) => Promise<ProposerReply>;

/** The most recent experiments the proposer is shown; older ones are summarised by count. */
export const HISTORY_LINES = 60;
/** The idea archive's share of the context, in tokens (every experiment, grouped). */
const ARCHIVE_TOKENS = 3000;

export async function buildContext(args: ProposeArgs): Promise<ProposerContext> {
  const { config, repo } = args;
  const codeSha = args.fix?.sha ?? args.parentSha;
  const read = async (files: string[], sha: string) =>
    (await showFiles(repo, sha, files)).map((content, i) => ({ path: files[i], content: content ?? '' }));
  const rows = experiments(args.campaignDir);
  const best = rows.filter((r) => r.commit === args.parentSha).at(-1);
  const rejected = readLedger(args.campaignDir)
    .filter((r) => r.kind === 'rejected' && r.experiment === args.experiment)
    .at(-1);
  let fix: ProposerContext['fix'] = null;
  if (args.fix) {
    const crashed = rows.find((r) => r.experiment === args.fix!.experiment);
    fix = {
      experiment: args.fix.experiment,
      description: crashed?.description ?? '',
      reason: crashed?.reason ?? '',
      logTail: crashed?.logTail ?? '',
      diff: await diffOf(repo, args.parentSha, args.fix.sha),
    };
  }
  // The locked files and the instructions (both at the best) in one git call.
  const atBest = await read([...config.locked, ...(config.instructions ? [config.instructions] : [])], args.parentSha);
  const locked = atBest.slice(0, config.locked.length);
  const instructions = config.instructions ? atBest.at(-1)!.content : null;
  return {
    tag: args.tag,
    experiment: args.experiment,
    attempt: args.attempt,
    seed: config.proposer.seed,
    model: config.proposer.model,
    effort: config.proposer.effort,
    metric: { name: config.metric.name, direction: config.metric.direction },
    instructions: args.instructionsOverride ?? instructions ?? '',
    notes: args.notes,
    editable: await read(config.editable, codeSha),
    locked,
    history: rows.slice(-HISTORY_LINES).map((r) => ({
      experiment: r.experiment,
      status: r.status,
      metric: r.metric,
      delta: r.delta,
      description: r.description,
    })),
    best: { experiment: best?.experiment ?? 0, metric: best?.metric ?? null, commit: args.parentSha },
    fix,
    inFlight: await inFlightOf(args, rows),
    lastRejection: rejected && rejected.kind === 'rejected' ? rejected.reason : null,
    code: { repo, sha: codeSha },
    archive: await archiveFor(args),
  };
}

/**
 * The context with its records read again (the experiments in flight, the archive): slots propose at
 * once, and an agent may think for an hour while experiments finish or begin. For the duplicate checks.
 */
export async function withFreshRecords(args: ProposeArgs, ctx: ProposerContext): Promise<ProposerContext> {
  // The archive's entries only: its text and plateau note were for the proposer, who has been shown them.
  const archive = ctx.archive && { ...ctx.archive, ...(await archiveEntries(args)) };
  return { ...ctx, inFlight: await inFlightOf(args, experiments(args.campaignDir)), archive };
}

/**
 * In flight: the campaign's experiment refs that have no record yet (the ref names the experiment, its
 * commit's subject is the proposal's description).
 */
async function inFlightOf(args: ProposeArgs, rows: ExperimentRecord[]): Promise<ProposerContext['inFlight']> {
  const recorded = new Set(rows.map((r) => r.experiment));
  const prefix = experimentRef(args.tag, 0).replace(/0$/, '');
  return (await refSubjects(args.repo, prefix))
    .map((r) => ({ experiment: Number(r.ref.slice(prefix.length)), description: r.subject, tree: r.tree }))
    .filter(
      (r) =>
        Number.isInteger(r.experiment) &&
        r.experiment > 0 &&
        r.experiment !== args.experiment &&
        !recorded.has(r.experiment),
    )
    .sort((a, b) => a.experiment - b.experiment);
}

/** The campaign's archive, compacted, with the plateau note (the search's default rule until configured). */
async function archiveFor(args: ProposeArgs): Promise<ProposerContext['archive']> {
  const { entries, inherited } = await archiveEntries(args);
  return {
    entries,
    inherited,
    text: compactArchive([...inherited, ...entries], ARCHIVE_TOKENS),
    parentTree: (await commitFacts(args.repo, args.parentSha, args.parentSha)).tree,
    plateau: plateauNote(entries, { best: args.parentSha, settings: args.config.search ?? DEFAULT_SEARCH }),
  };
}

/** The experiments tried: this campaign's, and a fork's parent's (there, up to where it forked and after). */
async function archiveEntries(args: ProposeArgs): Promise<{ entries: IdeaEntry[]; inherited: IdeaEntry[] }> {
  const direction = args.config.metric.direction;
  const entries = await ideaEntries({ repo: args.repo, campaignDir: args.campaignDir, direction });
  const fork = args.forkOf;
  const inherited = fork
    ? (await ideaEntries({ repo: args.repo, campaignDir: fork.campaignDir, direction })).map((e) => ({
        ...e,
        campaign: fork.tag,
      }))
    : [];
  return { entries, inherited };
}

/**
 * The context's sections, in three groups from most to least stable: `files` (instructions and
 * files: change on a keep), `history` (results, best, notes: every experiment) and `task` (this
 * request only). The Anthropic proposer puts a cache breakpoint after each of the first two.
 */
export function contextSections(ctx: ProposerContext): { files: string[]; history: string[]; task: string[] } {
  const better = ctx.metric.direction === 'lower' ? 'lower' : 'higher';
  const files: string[] = [];
  files.push(`# Instructions\n\n${ctx.instructions.trim() || '(none given)'}`);
  files.push(
    `# Goal\n\nMake ${ctx.metric.name} ${better}. Only these files may be edited: ${ctx.editable.map((f) => f.path).join(', ')}.`,
  );
  for (const f of ctx.locked) files.push(`# Locked file (read only): ${f.path}\n\n\`\`\`\n${f.content}\n\`\`\``);
  for (const f of ctx.editable) files.push(`# Editable file: ${f.path}\n\n\`\`\`\n${f.content}\n\`\`\``);

  const history: string[] = [];
  history.push(
    `# Experiments so far (experiment, status, ${ctx.metric.name}, delta, description; ${better} is better)\n\n${renderHistory(ctx.history)}`,
  );
  history.push(
    `# Current best\n\nexperiment ${ctx.best.experiment}, ${ctx.metric.name} ${ctx.best.metric ?? 'unknown'}, commit ${ctx.best.commit.slice(0, 7)}`,
  );
  if (ctx.archive)
    history.push(`# The idea archive (every experiment, grouped by what it changed)\n\n${ctx.archive.text}`);
  if (ctx.notes.length)
    history.push(`# Notes from the human (most recent last)\n\n${ctx.notes.map((n) => `- ${n}`).join('\n')}`);

  const task: string[] = [];
  if (ctx.inFlight.length) {
    // Parallel proposals that repeat each other waste GPU time, and edits to the same lines
    // conflict when one of them is kept (the other is then proposed again).
    task.push(
      `# Experiments in flight (proposed, not judged yet)\n\n${ctx.inFlight.map((f) => `${f.experiment}\t${f.description}`).join('\n')}\n\nPropose something different from these, preferably in other lines of the code.`,
    );
  }
  if (ctx.fix) {
    task.push(
      `# Task: fix the crash of experiment ${ctx.fix.experiment}\n\nIt tried: ${ctx.fix.description}\nIt failed: ${ctx.fix.reason}\n\nIts diff against the best:\n\`\`\`diff\n${ctx.fix.diff}\n\`\`\`\n\nThe end of its log:\n\`\`\`\n${ctx.fix.logTail}\n\`\`\`\n\nThe editable files above are the crashed version. Fix the bug if it is simple; otherwise propose something else.`,
    );
  } else {
    task.push(
      `# Task\n\nPropose experiment ${ctx.experiment}: one idea, as edits to the editable files, with a one-line description.`,
    );
  }
  if (ctx.archive?.plateau) task.push(`# On a plateau\n\n${ctx.archive.plateau}`);
  if (ctx.lastRejection) task.push(`# Your previous proposal was rejected\n\n${ctx.lastRejection}`);
  return { files, history, task };
}

/** The context as one markdown document: the prompt body for agents, the NIGHTLAB_CONTEXT file for commands. */
export function renderContext(ctx: ProposerContext): string {
  const { files, history, task } = contextSections(ctx);
  return [...files, ...history, ...task].join('\n\n');
}

export function renderHistory(history: HistoryLine[]): string {
  if (!history.length) return '(none yet)';
  return history
    .map(
      (h) =>
        `${h.experiment}\t${h.status}\t${h.metric === null ? '-' : h.metric.toFixed(6)}\t${h.delta === null ? '' : (h.delta >= 0 ? '+' : '') + h.delta.toFixed(6)}\t${h.description}`,
    )
    .join('\n');
}

/** Thrown by a proposer whose reply cannot be used: recorded as a rejected proposal, not retried. */
export class ProposalRejected extends Error {
  constructor(
    message: string,
    public readonly costUsd = 0,
    public readonly usage?: TokenUsage,
  ) {
    super(message);
    this.name = 'ProposalRejected';
  }
}
