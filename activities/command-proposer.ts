// The `command` proposer: any external agent (Claude Code headless, codex, aider, a script) edits
// the worktree in place. It reads the same context as every proposer from $NIGHTLAB_CONTEXT and
// may write its one-line description to $NIGHTLAB_DESCRIPTION; the diff then goes through preflight.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { CancelledFailure } from '@temporalio/activity';
import { execa } from 'execa';
import { ProposalRejected, renderContext, type Proposer } from './context';

/** An agent gets this long per proposal before it is stopped and the proposal rejected. */
const COMMAND_TIMEOUT_MS = 30 * 60_000;

export function commandProposer(command: string, scratchDir: string): Proposer {
  return async (ctx, signal) => {
    const dir = path.join(scratchDir, `${ctx.experiment}-${ctx.attempt}`);
    mkdirSync(dir, { recursive: true });
    const contextFile = path.join(dir, 'context.md');
    const descriptionFile = path.join(dir, 'description.txt');
    writeFileSync(contextFile, renderContext(ctx));
    const r = await execa(command, {
      shell: true,
      cwd: ctx.worktree,
      env: {
        NIGHTLAB_CONTEXT: contextFile,
        NIGHTLAB_DESCRIPTION: descriptionFile,
        NIGHTLAB_EXPERIMENT: String(ctx.experiment),
        NIGHTLAB_ATTEMPT: String(ctx.attempt),
        NIGHTLAB_FIX: ctx.fix ? String(ctx.fix.experiment) : '',
        NIGHTLAB_EDITABLE: ctx.editable.map((f) => f.path).join(' '),
      },
      reject: false,
      all: true,
      timeout: COMMAND_TIMEOUT_MS,
      cancelSignal: signal,
      forceKillAfterDelay: 5000,
    });
    writeFileSync(path.join(dir, 'output.log'), r.all ?? '');
    // A worker shutting down cancels the agent: that is a retry of the same proposal, not a rejection.
    if (r.signal || r.isCanceled) await new Promise((s) => setTimeout(s, 1000)); // the cancel may lag the signal
    if (signal.aborted) throw new CancelledFailure(`proposer command stopped: ${(signal.reason as Error)?.message ?? 'cancelled'}`);
    if (r.exitCode !== 0) {
      throw new ProposalRejected(`proposer command exited ${r.exitCode ?? r.signal}: ${lastLine(r.all ?? '')}`);
    }
    const description = existsSync(descriptionFile) ? readFileSync(descriptionFile, 'utf8') : lastLine(r.stdout ?? '');
    return { description: description.trim() || 'edit by proposer command' };
  };
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1)?.slice(0, 300) ?? '';
}
