// Test harness: real git repos, real workers on their own task queues, the suite's real server.
import { mkdtempSync, readdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, Runtime, type Worker } from '@temporalio/worker';
import type { Client } from '@temporalio/client';
import { connectClient, connectWorker } from '../ops/connection';
import { parseConfig, PRESETS, type CampaignConfigInput } from '../common/config';
import type { CampaignSnapshot } from '../common/shared';
import { createOrchestratorWorker } from '../workers/orchestrator';
import { createGpuWorkers } from '../gpu-worker/worker';
import type { Slot } from '../gpu-worker/run';
import type { ActivityDeps } from '../activities';
import { makeExampleRepo } from '../cli/demo';
import { prepareStart, startCampaign } from '../client/campaigns';
import { git } from '../lib/git';

// Worker chatter at INFO would drown the test report; warnings and errors still show. A test that needs a
// runtime of its own (test/metrics.test.ts: a Prometheus exporter) installs it before importing this file.
try {
  Runtime.install({ logger: new DefaultLogger('WARN') });
} catch {
  // installed already, by the test
}

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const QUADRATIC = path.join(ROOT, 'test', 'fixtures', 'quadratic');
export const TINY_LM = path.join(ROOT, 'examples', 'tiny-lm');
export const ADDRESS = process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233';

/**
 * The tiny-lm preset on a smaller token budget: the same code, about 1.5 s per run at 300k characters
 * instead of about 6 s at the preset's 1.2M.
 */
export function tinyLm(tokenBudget = 300_000): CampaignConfigInput {
  const preset = PRESETS['tiny-lm'];
  return { ...preset, run: { ...preset.run!, env: { TINYLM_TOKEN_BUDGET: String(tokenBudget) } } };
}

export function uniqueTag(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;
}

export function tempDir(prefix = 'nightlab-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A fresh git repo from a fixture, with optional edits committed in the baseline. */
export async function makeRepo(fixture = QUADRATIC, edit?: (dir: string) => void): Promise<string> {
  const dir = path.join(tempDir('nightlab-repo-'), 'target');
  await makeExampleRepo(dir, fixture);
  if (edit) {
    edit(dir);
    await git(dir).raw(['add', '-A']);
    await git(dir).raw(['commit', '--quiet', '-m', 'baseline edits']);
  }
  return dir;
}

export function setLine(file: string, name: string, value: string): void {
  const text = readFileSync(file, 'utf8').replace(new RegExp(`^${name} = .*$`, 'm'), `${name} = ${value}`);
  writeFileSync(file, text);
}

export const QUADRATIC_CONFIG: CampaignConfigInput = {
  target: '.',
  editable: ['train.py'],
  locked: ['prepare.py'],
  instructions: 'program.md',
  run: { command: 'python3 train.py', timeoutSec: 60 },
  metric: { name: 'val_bpb', direction: 'lower' },
  memory: { key: 'peak_vram_mb' },
  budget: { maxExperiments: 4 },
  proposer: { kind: 'mutate', seed: 1 },
};

export interface Lab {
  client: Client;
  home: string;
  taskQueue: string;
  gpuTaskQueue: string;
  orchestrator: Worker;
  gpu: Worker[];
  startGpu(slots?: Slot[]): Promise<void>;
  stopGpu(): Promise<void>;
  start(
    repo: string,
    config?: Partial<CampaignConfigInput>,
    opts?: { tag?: string; historyEventsLimit?: number },
  ): Promise<{ tag: string; campaignDir: string; branch: string; result: () => Promise<CampaignSnapshot> }>;
  close(): Promise<void>;
}

/** An orchestrator worker and a GPU worker on task queues of their own, for one test. */
export async function lab(opts: { deps?: ActivityDeps; slots?: Slot[]; gpu?: boolean } = {}): Promise<Lab> {
  const home = tempDir('nightlab-home-');
  const id = uniqueTag('q');
  const taskQueue = `orch-${id}`;
  const gpuTaskQueue = `gpu-${id}`;
  const client = await connectClient(ADDRESS);
  const connection = await connectWorker(ADDRESS);
  const orchestrator = await createOrchestratorWorker({ connection, taskQueue, deps: opts.deps });
  const runs: Promise<void>[] = [orchestrator.run()];
  let gpu: Worker[] = [];
  let gpuRuns: Promise<void>[] = [];
  const started: string[] = [];
  const l: Lab = {
    client,
    home,
    taskQueue,
    gpuTaskQueue,
    orchestrator,
    gpu,
    async startGpu(slots = opts.slots ?? [{ name: 'cpu', devices: null }]) {
      gpu = await createGpuWorkers({ connection, home, slots, taskQueue: gpuTaskQueue });
      l.gpu = gpu;
      gpuRuns = gpu.map((w) => w.run());
    },
    async stopGpu() {
      gpu.forEach((w) => w.shutdown());
      await Promise.allSettled(gpuRuns);
      gpu = [];
    },
    async start(repo, config = {}, o = {}) {
      const tag = o.tag ?? uniqueTag('t');
      // The engine's search moves would take experiments from the planned proposals of most tests.
      const cfg = parseConfig(
        { ...QUADRATIC_CONFIG, search: { combine: 0, ablate: 0, revisit: 0 }, ...config },
        'test',
      );
      const input = await prepareStart({ config: cfg, baseDir: repo, tag, home });
      const handle = await startCampaign(
        client,
        { ...input, gpuTaskQueue },
        { taskQueue, historyEventsLimit: o.historyEventsLimit },
      );
      started.push(handle.workflowId);
      return {
        tag,
        campaignDir: input.campaignDir,
        branch: input.branch,
        result: () => handle.result() as Promise<CampaignSnapshot>,
      };
    },
    async close() {
      // A campaign a test left running (a failed assertion, a test about pausing) would clutter a shared server.
      for (const id of started) {
        const h = client.workflow.getHandle(id);
        if ((await h.describe().catch(() => null))?.status.name === 'RUNNING')
          await h.terminate('test finished').catch(() => {});
      }
      await l.stopGpu();
      orchestrator.shutdown();
      await Promise.allSettled(runs);
      await connection.close();
      await client.connection.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
  if (opts.gpu !== false) await l.startGpu();
  return l;
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A `command` proposer driven by a plan: experiment n sets plan[n]'s settings (a fix uses
 * plan.fix when the plan has one; attempt a of n uses plan["n/a"] when there is one), after
 * sleeping `delay` seconds. Returns the proposer's config: its script is a read-only path of the
 * sandbox (proposer.readOnly). What each proposal saw is in the campaign's proposals/ (proposalContext).
 */
export function plannedProposer(plan: Record<string, Record<string, number | string>>) {
  const dir = tempDir('nightlab-proposer-');
  writeFileSync(path.join(dir, 'plan.json'), JSON.stringify(plan));
  writeFileSync(
    path.join(dir, 'propose.py'),
    `import json, os, re, sys, time
plan = json.load(open(sys.argv[1]))
n, fix = os.environ["NIGHTLAB_EXPERIMENT"], os.environ["NIGHTLAB_FIX"]
# "n/attempt" plans a proposal made again (after a rejection or a rebase conflict); "n" every attempt;
# "fix" any fix of a crash, where the plan has one (else a fix is planned by its number too).
step = plan["fix"] if fix and "fix" in plan else plan.get(f"{n}/{os.environ['NIGHTLAB_ATTEMPT']}", plan[n])
time.sleep(float(step.get("delay", 0)))
src = open("train.py").read()
for name, value in step.items():
    if name in ("desc", "delay"): continue
    src = re.sub(rf"^{name} = \\S+", f"{name} = {value}", src, flags=re.M)
open("train.py", "w").write(src)
open(os.environ["NIGHTLAB_DESCRIPTION"], "w").write(step.get("desc", "planned edit"))
`,
  );
  return {
    kind: 'command' as const,
    command: `python3 ${path.join(dir, 'propose.py')} ${path.join(dir, 'plan.json')}`,
    seed: 0,
    readOnly: [dir],
  };
}

/** The context proposal `attempt` of experiment n saw (the last attempt's when none is given). */
export function proposalContext(campaignDir: string, n: number, attempt?: number): string {
  const dir = path.join(campaignDir, 'proposals');
  const a =
    attempt ??
    Math.max(
      ...readdirSync(dir)
        .map((f) => new RegExp(`^${n}-(\\d+)\\.context\\.md$`).exec(f)?.[1])
        .filter(Boolean)
        .map(Number),
    );
  return readFileSync(path.join(dir, `${n}-${a}.context.md`), 'utf8');
}
