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
import { dataConverter } from '../lib/codec';
import { metricsInterceptor } from '../lib/telemetry';

export const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();
/**
 * Bundling takes seconds: do it once per process and share it between workers. With encryption on, the
 * bundle holds the failure converter that encrypts failure messages too (lib/codec.ts).
 */
export function workflowBundle(
  failureConverterPath = dataConverter().failureConverterPath,
): Promise<WorkflowBundleWithSourceMap> {
  const key = failureConverterPath ?? '';
  if (!bundles.has(key)) {
    bundles.set(
      key,
      bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, failureConverterPath, logger: quietBundlerLogger }),
    );
  }
  return bundles.get(key)!;
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

/** An orchestrator version under Worker Versioning: `nightlab worker --deployment D --build-id B`. */
export interface OrchestratorVersion {
  deploymentName: string;
  buildId: string;
}

/**
 * `version`: Worker Versioning on (docs/upgrading.md). This worker then takes only the workflow tasks of its
 * own version: campaigns are pinned to the version that started them (workflows/campaign.ts) and move at
 * continue-as-new. Without it, the worker is unversioned and takes any campaign's tasks, as before.
 */
export async function createOrchestratorWorker(opts: {
  connection: NativeConnection;
  namespace?: string;
  taskQueue?: string;
  deps?: ActivityDeps;
  maxActivities?: number;
  version?: OrchestratorVersion;
}): Promise<Worker> {
  // What this process inherited would reach every proposer and run it starts.
  closeInheritedFds();
  const converter = dataConverter();
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? DEFAULT_NAMESPACE,
    taskQueue: opts.taskQueue ?? ORCHESTRATOR_TASK_QUEUE,
    workflowBundle: await workflowBundle(converter.failureConverterPath),
    activities: createActivities(opts.deps),
    maxConcurrentActivityTaskExecutions: opts.maxActivities ?? DEFAULT_MAX_ACTIVITIES,
    // Payloads encrypted when a key is configured; Nightlab's metrics counted as activities finish.
    dataConverter: converter,
    interceptors: { activity: [metricsInterceptor] },
    ...(opts.version && {
      workerDeploymentOptions: {
        useWorkerVersioning: true,
        version: opts.version,
        defaultVersioningBehavior: 'PINNED',
      },
    }),
  });
}

/** How long `setCurrentVersion` waits for the server to see the version's first poll. */
const SET_CURRENT_WAIT_MS = 60_000;
/**
 * What the server answers for a version none of whose workers has polled yet: gRPC NOT_FOUND ("Version not found
 * in deployment"), or FAILED_PRECONDITION for a deployment it does not know at all.
 */
const NO_POLLERS_YET = [5, 9];

/**
 * Makes `version` its deployment's current version: new campaigns start on it, and running ones move to it at
 * their next continue-as-new. The server knows a version once one of its workers has polled: until then this
 * retries (`temporal worker deployment set-current-version` does the same from a shell).
 */
export async function setCurrentVersion(
  connection: NativeConnection,
  namespace: string,
  version: OrchestratorVersion,
): Promise<void> {
  const deadline = Date.now() + SET_CURRENT_WAIT_MS;
  for (;;) {
    try {
      await connection.workflowService.setWorkerDeploymentCurrentVersion({
        namespace,
        ...version,
        identity: 'nightlab worker --set-current',
      });
      return;
    } catch (e) {
      if (!NO_POLLERS_YET.includes((e as { code: number }).code) || Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
