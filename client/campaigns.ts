// Client-side campaign operations shared by the CLI, the dashboard, the demo and the tests:
// validate and start a campaign, read its status, list the campaigns a server knows.
import path from 'node:path';
import { existsSync } from 'node:fs';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionInfo,
} from '@temporalio/client';
import { branchName, checkTag, ConfigError, type CampaignConfig } from '../common/config';
import {
  CAMPAIGN_WORKFLOW,
  ORCHESTRATOR_TASK_QUEUE,
  SA,
  campaignWorkflowId,
  isEnded,
  type CampaignInput,
  type CampaignSnapshot,
  type CampaignState,
} from '../common/shared';
import { isGitRepo, isGitUrl, readRef, showFile, git } from '../lib/git';
import { guardOf, listTree } from '../lib/tree';
import { priceOf } from '../common/prices';
import { nightlabHome } from '../ops/connection';
import type { campaign } from '../workflows/campaign';
import { statusQuery } from '../workflows/messages';
import { campaignRecords } from './records';
import { campaignInput } from './live';

export function campaignDirFor(tag: string, home = nightlabHome()): string {
  return path.join(home, 'campaigns', tag);
}

/** `auto` becomes a concrete proposer here, so history says which one ran. */
export function resolveProposer(config: CampaignConfig, env: NodeJS.ProcessEnv = process.env): CampaignConfig {
  if (config.proposer.kind !== 'auto') return config;
  return { ...config, proposer: { ...config.proposer, kind: env.ANTHROPIC_API_KEY ? 'anthropic' : 'mutate' } };
}

/** The tag cannot name a new campaign: malformed, or a campaign or its branch has it (the CLI's usage error). */
export class TagRefused extends Error {}

/**
 * Everything checked before a campaign starts; returns the workflow input, or throws ConfigError
 * (the config and what it names) or TagRefused.
 */
export async function prepareStart(args: {
  config: CampaignConfig;
  baseDir: string;
  tag: string;
  home?: string;
  /** The commit to start from (a fork's); the target's HEAD by default. */
  base?: string;
}): Promise<CampaignInput> {
  try {
    checkTag(args.tag);
  } catch (e) {
    throw new TagRefused((e as ConfigError).problems.join('; '));
  }
  const config = resolveProposer(args.config);
  if (config.proposer.kind === 'anthropic') {
    try {
      priceOf(config.proposer.model);
    } catch (e) {
      throw new ConfigError([`proposer.model: ${(e as Error).message}`], 'proposer.model');
    }
  }
  const repo = path.resolve(args.baseDir, config.target);
  if (!existsSync(repo))
    throw new ConfigError([`target: ${repo} does not exist; fix the path (relative to the config file)`], 'target');
  if (!(await isGitRepo(repo)))
    throw new ConfigError(
      [
        `target: ${repo} is not a git repository; run \`git init && git add -A && git commit -m baseline\` there, or fix the path`,
      ],
      'target',
    );
  const baseSha = args.base ?? (await readRef(repo, 'HEAD'));
  if (!baseSha)
    throw new ConfigError(
      [`target: ${repo} has no commits; commit the baseline code first (git add -A && git commit -m baseline)`],
      'target',
    );
  const problems: string[] = [];
  const committedPath = async (field: string, f: string) => {
    if (!(await listTree(git(repo), baseSha, { paths: [f], recursive: false })).length) {
      problems.push(
        `${field}: ${f} is not in the target's HEAD commit ${baseSha.slice(0, 7)}${existsSync(path.join(repo, f)) ? ' (it exists but is not committed; commit it)' : '; fix the path (a misspelt held-out path would hide nothing)'}`,
      );
    }
  };
  const committed = async (field: string, f: string) => {
    if ((await showFile(repo, baseSha, f)) === null) {
      problems.push(
        `${field}: ${f} is not in the target's HEAD commit ${baseSha.slice(0, 7)}${existsSync(path.join(repo, f)) ? ' (it exists but is not committed; commit it)' : '; fix the path or add the file'}`,
      );
    }
  };
  for (const f of config.editable) await committed('editable', f);
  for (const f of config.locked) await committed('locked', f);
  // Held-out data must be there to be hidden: a misspelt path would hide nothing.
  for (const f of config.evaluate?.heldOutPaths ?? []) await committedPath('evaluate.heldOutPaths', f);
  if (config.instructions) await committed('instructions', config.instructions);
  const tracked = new Set((await listTree(git(repo), baseSha)).map((e) => e.path));
  for (const p of config.run.persist) {
    if ([...tracked].some((t) => t === p || t.startsWith(`${p}/`)))
      problems.push(
        `run.persist: ${p} is committed in ${baseSha.slice(0, 7)}; persisted paths are made by run.setup and ignored by git (add ${p} to .gitignore and remove it from the commit)`,
      );
  }
  if (problems.length) throw new ConfigError(problems, 'target');
  // The locked files and held-out data as the base has them: every run is checked against these.
  const guard = await guardOf(git(repo), baseSha, [...config.locked, ...(config.evaluate?.heldOutPaths ?? [])]);
  if (config.remote) {
    const problem = await remoteProblem(repo, config.remote, baseSha);
    if (problem) throw new ConfigError([`remote: ${problem}`], 'remote');
  }
  const branch = branchName(config, args.tag);
  // git accepts some names only after normalizing them, so compare the normalized name too.
  const ref = `refs/heads/${branch}`;
  const normalized = await git(repo)
    .raw(['check-ref-format', '--normalize', ref])
    .catch(() => '');
  if (normalized !== ref)
    throw new ConfigError(
      [`branch: "${branch}" is not a valid git branch name; fix the branch field (default autoresearch/{tag})`],
      'branch',
    );
  if (await readRef(repo, `refs/heads/${branch}`)) {
    const fix = `choose another --tag, or delete the branch (git branch -D ${branch})`;
    throw new TagRefused(`branch ${branch} already exists in ${repo}; ${fix}`);
  }
  return { tag: args.tag, config, repo, branch, baseSha, campaignDir: campaignDirFor(args.tag, args.home), guard };
}

/**
 * Why GPU workers could not fetch candidates from `remote`, or null. It must serve the target
 * repository itself (Nightlab writes each candidate there, under refs/nightlab/): one of its refs
 * is at the target's HEAD. A path that does not exist here may be a GPU hosts' path: not checked.
 */
async function remoteProblem(repo: string, remote: string, baseSha: string): Promise<string | null> {
  if (!isGitUrl(remote) && !existsSync(path.resolve(repo, remote))) return null;
  let refs: string;
  try {
    refs = await git(repo).raw(['ls-remote', remote]);
  } catch (e) {
    return `${remote} cannot be read from this host (${(e as Error).message.split('\n').slice(-1)[0]}); fix the URL, or leave remote out when GPU workers can read the target path`;
  }
  if (!refs.split('\n').some((line) => line.startsWith(baseSha))) {
    return `${remote} does not serve the target repository (none of its refs is at HEAD ${baseSha.slice(0, 7)}); name the target repository itself, which GPU workers fetch candidates from`;
  }
  return null;
}

export async function startCampaign(
  client: Client,
  input: CampaignInput,
  options: { historyEventsLimit?: number; taskQueue?: string } = {},
) {
  try {
    return await client.workflow.start<typeof campaign>(CAMPAIGN_WORKFLOW, {
      workflowId: campaignWorkflowId(input.tag),
      taskQueue: options.taskQueue ?? ORCHESTRATOR_TASK_QUEUE,
      args: [{ ...input, ...(options.historyEventsLimit ? { historyEventsLimit: options.historyEventsLimit } : {}) }],
      typedSearchAttributes: [
        { key: SA.tag, value: input.tag },
        { key: SA.state, value: 'running' },
      ],
      staticSummary: `Nightlab campaign ${input.tag}: ${input.config.metric.name} (${input.config.metric.direction} is better) on ${path.basename(input.repo)}`,
      staticDetails: `Repository: ${input.repo}\n\nBranch: ${input.branch}\n\nEditable: ${input.config.editable.join(', ')}\n\nProposer: ${input.config.proposer.kind}\n\nRecords: ${input.campaignDir}`,
    });
  } catch (e) {
    if (e instanceof WorkflowExecutionAlreadyStartedError) {
      const fix = `see \`nightlab status ${input.tag}\`, or choose another --tag`;
      throw new TagRefused(`a campaign with tag ${input.tag} is already running; ${fix}`);
    }
    throw e;
  }
}

/**
 * A new campaign from experiment `from` of campaign `parent`: its config and repository, experiment
 * `from`'s commit as its base (run again as its baseline), the parent's archive as the start of its own;
 * on the parent's task queue, whose orchestrator holds the parent's records.
 */
export async function prepareFork(
  client: Client,
  o: { parent: string; from: number; tag: string; home?: string },
): Promise<{ input: CampaignInput; taskQueue: string }> {
  const parent = await campaignInput(client, o.parent);
  const { taskQueue } = await client.workflow.getHandle(campaignWorkflowId(o.parent)).describe();
  const { rows } = await campaignRecords(client, o.parent, { input: parent });
  const row = rows.find((r) => r.kind === 'experiment' && r.experiment === o.from);
  if (!row || row.kind !== 'experiment') {
    const known = rows.filter((r) => r.kind === 'experiment').map((r) => r.experiment);
    throw new TagRefused(
      `campaign ${o.parent} has no recorded experiment ${o.from} (recorded: ${known.length ? `0 to ${Math.max(...known)}` : 'none'}); fix --from`,
    );
  }
  if (row.status === 'crash')
    throw new TagRefused(
      `experiment ${o.from} of campaign ${o.parent} crashed (${row.reason.slice(0, 200)}); fork from an experiment that ran`,
    );
  const input = await prepareStart({
    config: { ...parent.config, target: parent.repo },
    baseDir: parent.repo,
    tag: o.tag,
    home: o.home,
    base: row.commit,
  });
  const forkOf = { tag: o.parent, experiment: o.from, campaignDir: parent.campaignDir };
  const gpu = parent.gpuTaskQueue ? { gpuTaskQueue: parent.gpuTaskQueue } : {};
  return { input: { ...input, ...gpu, forkOf }, taskQueue };
}

/** No workflow for the tag on this server (the dashboard answers 404, the CLI exits 1). */
export class CampaignNotFound extends Error {
  constructor(tag: string) {
    super(`No campaign with tag ${tag} (workflow ${campaignWorkflowId(tag)}); see \`nightlab list\``);
  }
}

/** The campaign's status: asked of the running workflow, or read from how it ended. */
export async function campaignStatus(client: Client, tag: string): Promise<CampaignSnapshot> {
  const handle = client.workflow.getHandle(campaignWorkflowId(tag));
  let desc;
  try {
    desc = await handle.describe();
  } catch (e) {
    if (e instanceof WorkflowNotFoundError) throw new CampaignNotFound(tag);
    throw e;
  }
  if (desc.status.name === 'RUNNING') return handle.query(statusQuery);
  if (desc.status.name === 'COMPLETED') return (await handle.result()) as CampaignSnapshot;
  let message = desc.status.name.toLowerCase();
  try {
    await handle.result();
  } catch (e) {
    const cause = (e as { cause?: Error }).cause;
    message = cause?.message ?? (e as Error).message;
  }
  const sa = desc.typedSearchAttributes;
  // Crashes and the baseline from the records where they can be read; else the status says what it knows.
  const records = await campaignRecords(client, tag).catch(() => null);
  const rows = (records?.rows ?? []).filter((r) => r.kind === 'experiment');
  // The rest of what a snapshot says comes from the campaign's start input, which history keeps.
  const input = await campaignInput(client, tag).catch(() => null);
  const config = input?.config;
  return {
    tag,
    state: 'failed',
    message,
    experiments: sa.get(SA.experiments) ?? 0,
    kept: sa.get(SA.kept) ?? 0,
    crashes: rows.filter((r) => r.status === 'crash').length,
    bestMetric: sa.get(SA.best) ?? null,
    bestCommit: null,
    baselineMetric: rows[0]?.metric ?? null,
    metricName: config?.metric.name ?? 'metric',
    direction: config?.metric.direction ?? 'lower',
    costUsd: sa.get(SA.cost) ?? 0,
    budget: config?.budget ?? { maxExperiments: null, maxHours: null, maxCostUsd: null },
    startedAt: desc.startTime.toISOString(),
    current: null,
    inFlight: [],
    noiseSigma: null,
    parallelism: config?.parallelism ?? 1,
    campaignDir: records?.campaignDir ?? input?.campaignDir ?? campaignDirFor(tag),
    branch: input?.branch ?? '',
  };
}

/** One line of `nightlab list` and of the dashboard's list: what visibility says of a campaign. */
export interface CampaignSummary {
  tag: string;
  state: CampaignState;
  /** Whether the campaign has ended (its state is completed, stopped or failed). */
  ended: boolean;
  experiments: number;
  kept: number;
  bestMetric: number | null;
  costUsd: number;
  startTime: string;
  closeTime: string | null;
}

/**
 * The campaigns on the server, newest first, from visibility (the search attributes the workflow
 * upserts): no query reaches a workflow. Visibility lags the workflow by a moment.
 */
export async function listCampaigns(client: Client, limit = 100): Promise<CampaignSummary[]> {
  const seen = new Map<string, CampaignSummary>();
  for await (const wf of client.workflow.list({ query: `WorkflowType = '${CAMPAIGN_WORKFLOW}'`, pageSize: limit })) {
    // Each continue-as-new leaves a closed execution behind: the newest (listed first) speaks.
    if (!seen.has(wf.workflowId)) seen.set(wf.workflowId, summaryOf(wf));
    if (seen.size >= limit) break;
  }
  return [...seen.values()];
}

function summaryOf(wf: WorkflowExecutionInfo): CampaignSummary {
  const sa = wf.typedSearchAttributes;
  const running = wf.status.name === 'RUNNING' || wf.status.name === 'CONTINUED_AS_NEW';
  // A workflow that closed without saying so (terminated, timed out) failed, as `campaignStatus` says.
  const upserted = sa.get(SA.state) as CampaignState | undefined;
  const state: CampaignState = upserted && (running || isEnded(upserted)) ? upserted : running ? 'running' : 'failed';
  return {
    tag: sa.get(SA.tag) ?? wf.workflowId.replace(/^campaign-/, ''),
    state,
    ended: isEnded(state),
    experiments: sa.get(SA.experiments) ?? 0,
    kept: sa.get(SA.kept) ?? 0,
    bestMetric: sa.get(SA.best) ?? null,
    costUsd: sa.get(SA.cost) ?? 0,
    startTime: wf.startTime.toISOString(),
    closeTime: wf.closeTime?.toISOString() ?? null,
  };
}

export function uiLink(
  tag: string,
  namespace: string,
  uiBase = process.env.NIGHTLAB_UI_URL || 'http://127.0.0.1:8233',
): string {
  return `${uiBase}/namespaces/${namespace}/workflows/${campaignWorkflowId(tag)}`;
}
