// Worker Versioning (docs/upgrading.md): a campaign is pinned to the orchestrator version (worker deployment
// + build id) that started it; at each continue-as-new, its new run moves itself to the deployment's current
// version with this activity, the first step of every continued run. A new run starts on the version its
// predecessor was on (server 1.29.1: pinned to the override's version, without the override), so a campaign
// moves A -> B -> C, one move per continue-as-new.
import { Context } from '@temporalio/activity';
import proto, { type temporal } from '@temporalio/proto';

type WorkflowService = Context['client']['workflowService'];
type Version = temporal.api.deployment.v1.IWorkerDeploymentVersion;

const PINNED = proto.temporal.api.enums.v1.VersioningBehavior.VERSIONING_BEHAVIOR_PINNED;
const PINNED_OVERRIDE =
  proto.temporal.api.workflow.v1.VersioningOverride.PinnedOverrideBehavior.PINNED_OVERRIDE_BEHAVIOR_PINNED;

/** A version as the server writes it (search attribute TemporalWorkerDeploymentVersion): `deployment:buildId`. */
export function versionName(v: Version): string {
  return `${v.deploymentName}:${v.buildId}`;
}

/** What a continued run's first step did: the version it was pinned to and the one it moved to (null: stayed). */
export interface VersionMove {
  from: string;
  to: string | null;
}

/**
 * The version a run's workflow tasks go to: a pinned override's, else the version a pinned run started on;
 * null for a run that is not pinned (an unversioned worker, or an auto-upgrade one).
 */
export function pinnedVersion(info: temporal.api.workflow.v1.IWorkflowExecutionVersioningInfo | null | undefined) {
  const override = info?.versioningOverride?.pinned?.version;
  if (override?.buildId) return override;
  return info?.behavior === PINNED && info.deploymentVersion?.buildId ? info.deploymentVersion : null;
}

/** gRPC NOT_FOUND: a deployment none of whose workers ever polled (or one deleted). */
const NOT_FOUND = 5;

/** The deployment's current version; null when it has none (or it is "unversioned", or gone). */
export async function currentVersion(service: WorkflowService, namespace: string, deploymentName: string) {
  try {
    const { workerDeploymentInfo } = await service.describeWorkerDeployment({ namespace, deploymentName });
    const current = workerDeploymentInfo?.routingConfig?.currentDeploymentVersion;
    return current?.buildId ? current : null;
  } catch (e) {
    if ((e as { code?: number }).code === NOT_FOUND) return null;
    throw e;
  }
}

/**
 * The first step of a continued run: when the deployment's current version is not the one this run is pinned
 * to, pins this run to it (a versioning override on this run). The run's next workflow task then goes to the
 * current version, which replays this run's start and this step only. Null for an unpinned run: nothing to do.
 * Idempotent: a retry finds the run already on the current version.
 */
export async function moveToCurrentVersion(): Promise<VersionMove | null> {
  const { info, client } = Context.current();
  const namespace = info.namespace;
  const execution = { ...info.workflowExecution! };
  const service = client.workflowService;
  const { workflowExecutionInfo } = await service.describeWorkflowExecution({ namespace, execution });
  const pinned = pinnedVersion(workflowExecutionInfo?.versioningInfo);
  const deploymentName = pinned?.deploymentName;
  if (!pinned || !deploymentName) return null;
  const current = await currentVersion(service, namespace, deploymentName);
  if (!current || current.buildId === pinned.buildId) return { from: versionName(pinned), to: null };
  await service.updateWorkflowExecutionOptions({
    namespace,
    workflowExecution: execution,
    workflowExecutionOptions: {
      versioningOverride: { pinned: { behavior: PINNED_OVERRIDE, version: current } },
    },
    updateMask: { paths: ['versioning_override'] },
    identity: `nightlab ${info.activityType}`,
  });
  return { from: versionName(pinned), to: versionName(current) };
}
