// The `command` proposer: any external agent (Claude Code headless, codex, aider, a script), confined
// like a training run. It gets a copy of the code (the commit's files, held-out data left out, no
// `.git` of the campaign's repository: a git repository of its own, one commit, for agents that
// like `git diff`), the context as a read-only file, and:
//   - a sandbox (lib/sandbox.ts): its copy is the only place it can write (plus an empty HOME and
//     /tmp that vanish with it); the campaign directory, the ledger, the repository, other
//     proposals and NIGHTLAB_HOME are not there at all;
//   - an environment of its own: PATH, HOME, locale, the NIGHTLAB_* variables, and only the
//     orchestrator variables that proposer.env names (its API key);
//   - no network unless proposer.network names hosts, and then only those, through lib/egress.ts;
//   - its whole process tree killed when it returns (its pid namespace ends with it).
// Nightlab then reads back the editable files alone (regular files, bounded), and makes the
// candidate commit itself; nothing else the agent wrote is read or kept.
import { lstatSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/activity';
import type { CampaignConfig } from '../common/config';
import { git } from '../lib/git';
import { confined, decideSandbox, type Mount } from '../lib/sandbox';
import { CappedLog, bounded, privateDir, supervise } from '../lib/supervise';
import { covers, diskId, removeAll, writeTree } from '../lib/tree';
import { EGRESS_PORT, FORWARDER, startEgress, type Egress } from '../lib/egress';
import { ProposalRejected, renderContext, type Proposer } from './context';

/** An agent gets this long per proposal before it is stopped and the proposal rejected. */
const COMMAND_TIMEOUT_SEC = 30 * 60;
/** An editable file read back larger than this is refused. */
const MAX_FILE_BYTES = 4 * 1024 * 1024;
const MAX_DESCRIPTION_BYTES = 4 * 1024;
/** The agent's output log (for people; never read back into a context). */
const MAX_OUTPUT_BYTES = 4 * 1024 * 1024;
/** Orchestrator variables an agent gets besides those proposer.env names. */
const PASS_THROUGH = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'LANG',
  'LC_ALL',
  'LC_CTYPE',
  'TERM',
  'TZ',
  'SSL_CERT_FILE',
  'SSL_CERT_DIR',
];

export interface CommandProposerOptions {
  config: CampaignConfig;
  /** The campaign's records: the agent's output log goes here, where the agent cannot reach. */
  campaignDir: string;
  /** The proposals' scratch (copies of the code): outside the campaign directory. */
  scratchDir: string;
  /** Never exposed to the agent: NIGHTLAB_HOME, the campaign repository. */
  protect: string[];
}

export function commandProposer(o: CommandProposerOptions): Proposer {
  const { config } = o;
  const heldOut = config.evaluate?.heldOutPaths ?? [];
  return async (ctx, signal) => {
    const sandbox = await decideSandbox(config.sandbox);
    if (sandbox.kind === 'refuse') throw new Error(`the command proposer cannot run: ${sandbox.reason}`);
    const dir = path.join(o.scratchDir, `${ctx.experiment}-${ctx.attempt}`);
    removeAll(dir);
    const work = path.join(privateDir(dir), 'work');
    const io = privateDir(path.join(dir, 'io'));
    const contextFile = path.join(dir, 'context.md');
    const descriptionFile = path.join(io, 'description.txt');
    writeFileSync(contextFile, renderContext(ctx), { mode: 0o400 });
    const log = new CappedLog(
      path.join(o.campaignDir, 'proposals', `${ctx.experiment}-${ctx.attempt}.log`),
      MAX_OUTPUT_BYTES,
    );
    let egress: (Egress & { port: number | null }) | null = null;
    try {
      const tree = await writeTree(git(ctx.code.repo), ctx.code.sha, work, heldOut);
      await ownRepository(work);
      const env: Record<string, string> = {
        ...pick(process.env, PASS_THROUGH),
        ...pick(process.env, config.proposer.env),
        NIGHTLAB_CONTEXT: contextFile,
        NIGHTLAB_DESCRIPTION: descriptionFile,
        NIGHTLAB_EXPERIMENT: String(ctx.experiment),
        NIGHTLAB_ATTEMPT: String(ctx.attempt),
        NIGHTLAB_FIX: ctx.fix ? String(ctx.fix.experiment) : '',
        NIGHTLAB_EDITABLE: ctx.editable.map((f) => f.path).join(' '),
      };
      const mounts: Mount[] = [
        { path: work, mode: 'rw' },
        { path: contextFile, mode: 'ro' },
        { path: io, mode: 'rw' },
      ];
      let command = config.proposer.command!;
      if (config.proposer.network.length) {
        // Sandboxed: a forwarder inside carries connections to the proxy's Unix socket, outside.
        const bwrap = sandbox.kind === 'bwrap';
        egress = await startEgress(bwrap ? path.join(io, 'egress.sock') : 0, config.proposer.network);
        const proxy = `http://127.0.0.1:${bwrap ? EGRESS_PORT : egress.port}`;
        for (const k of ['HTTPS_PROXY', 'HTTP_PROXY', 'https_proxy', 'http_proxy', 'ALL_PROXY']) env[k] = proxy;
        env.NO_PROXY = env.no_proxy = '';
        if (bwrap) {
          mounts.push({ path: FORWARDER, mode: 'ro' });
          command = `exec python3 -I -S ${shellQuote(FORWARDER)} ${shellQuote(path.join(io, 'egress.sock'))} ${EGRESS_PORT} ${shellQuote(command)}`;
        }
      }
      const spec = { cwd: work, mounts, env, protect: o.protect, readOnly: config.proposer.readOnly, network: false };
      const proc = await confined(sandbox, spec, command);
      log.write(
        `=== nightlab ${ctx.tag} experiment ${ctx.experiment} proposal ${ctx.attempt}: ${config.proposer.command}\n=== ${sandbox.header}\n`,
      );
      const r = await supervise({
        argv: proc.argv,
        cwd: work,
        env: proc.env,
        timeoutSec: COMMAND_TIMEOUT_SEC,
        signal,
        log,
        feed: proc.feed,
      }).done;
      if (egress?.refused.length)
        log.write(
          `=== nightlab: connections refused (not in proposer.network): ${[...new Set(egress.refused)].join(', ')}\n`,
        );
      log.close();
      // A worker shutting down cancels the agent: that is a retry of the same proposal, not a rejection.
      if (r.killedFor === 'cancelled' || signal.aborted)
        throw new CancelledFailure(`proposer command stopped: ${(signal.reason as Error)?.message ?? 'cancelled'}`);
      if (r.killedFor === 'timeout')
        throw new ProposalRejected(`proposer command killed after ${COMMAND_TIMEOUT_SEC / 60} minutes`);
      if (r.exitCode !== 0)
        throw new ProposalRejected(bounded(`proposer command exited ${r.exitCode ?? r.signal}: ${r.lastLine}`, 400));
      const files = readBack(work, tree, o.config);
      const description = readSmall(descriptionFile, MAX_DESCRIPTION_BYTES) ?? r.lastLine;
      return { description: description.trim() || 'edit by proposer command', files };
    } finally {
      log.close();
      await egress?.close();
      removeAll(dir);
    }
  };
}

/**
 * The editable files as the agent left them; every other file of the commit must be as it was.
 * Only regular files are read (a symlink could point anywhere the worker can read), and never
 * more than MAX_FILE_BYTES. Files the agent added are neither read nor kept.
 */
function readBack(
  work: string,
  tree: Awaited<ReturnType<typeof writeTree>>,
  config: CampaignConfig,
): Record<string, string> {
  const files: Record<string, string> = {};
  const touched: string[] = [];
  for (const e of tree) {
    const file = path.join(work, e.path);
    if (config.editable.includes(e.path)) {
      const content = readSmall(file, MAX_FILE_BYTES);
      if (content === null)
        throw new ProposalRejected(`${e.path} is no longer a regular file of at most ${MAX_FILE_BYTES} bytes`);
      files[e.path] = content;
    } else if (e.type === 'blob' && diskId(file, e.oid.length === 64 ? 'sha256' : 'sha1') !== e.oid) {
      touched.push(e.path);
    }
  }
  const locked = touched.filter((f) => covers(config.locked, f));
  if (locked.length) throw new ProposalRejected(listed('changes locked file(s): ', locked));
  if (touched.length)
    throw new ProposalRejected(listed(`edits outside the editable files (${config.editable.join(', ')}): `, touched));
  return files;
}

/** A regular file's text, or null when it is missing, not a regular file, or larger than `max`. */
function readSmall(file: string, max: number): string | null {
  try {
    const st = lstatSync(file);
    if (!st.isFile() || st.size > max) return null;
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** A git repository of the copy's own, one commit, so an agent can diff its work (never read back). */
async function ownRepository(work: string): Promise<void> {
  const g = git(work);
  await g.raw(['init', '--quiet']);
  await g.raw(['add', '-A']);
  await g.raw(['commit', '--quiet', '--no-verify', '-m', 'the code to edit']);
}

function pick(env: NodeJS.ProcessEnv, names: string[]): Record<string, string> {
  return Object.fromEntries(names.filter((n) => env[n] !== undefined).map((n) => [n, env[n]!]));
}

function listed(prefix: string, files: string[]): string {
  return bounded(prefix + files.join(', '), 600);
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
