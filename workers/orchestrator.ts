// The orchestrator worker: the campaign workflows plus their CPU activities (propose, record, git).
import { fileURLToPath } from 'node:url';
import { closeInheritedFds } from '../lib/supervise';
import {
  Worker,
  bundleWorkflowCode,
  type NativeConnection,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { ORCHESTRATOR_TASK_QUEUE, DEFAULT_NAMESPACE } from '../common/shared';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
/** Bundling takes seconds: do it once per process and share it between workers. */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
  return bundle;
}

const quietBundlerLogger = {
  trace() {},
  debug() {},
  info() {},
  log() {},
  warn: (m: string) => console.warn(m),
  error: (m: string) => console.error(m),
} as never;

/**
 * Activities one orchestrator worker runs at once. Proposals are most of them, and an LLM proposal
 * mostly waits on the network for a minute or more: the limit should cover every campaign's
 * parallelism + lookahead, or proposals queue behind each other and GPUs wait
 * (`nightlab worker --max-activities`, NIGHTLAB_MAX_ACTIVITIES).
 */
export const DEFAULT_MAX_ACTIVITIES = 64;

export async function createOrchestratorWorker(opts: {
  connection: NativeConnection;
  namespace?: string;
  taskQueue?: string;
  deps?: ActivityDeps;
  maxActivities?: number;
}): Promise<Worker> {
  // What this process inherited would reach every proposer and run it starts.
  closeInheritedFds();
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? DEFAULT_NAMESPACE,
    taskQueue: opts.taskQueue ?? ORCHESTRATOR_TASK_QUEUE,
    workflowBundle: await workflowBundle(),
    activities: createActivities(opts.deps),
    maxConcurrentActivityTaskExecutions: opts.maxActivities ?? DEFAULT_MAX_ACTIVITIES,
  });
}
