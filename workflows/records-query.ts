// `records`: a campaign's records read where they live. The orchestrator worker that runs a campaign
// owns its records directory; a client on another host (a laptop, the dashboard's server) starts this
// short workflow on the campaign's task queue, and the activity, run by that worker, returns one page
// of the ledger. Nothing else happens here: it calls one activity and returns what it gives.
import { proxyActivities } from '@temporalio/workflow';
import type { OrchestratorActivities } from '../activities';
import type { RecordsPage, RecordsRequest } from '../activities/records';

export type { RecordsPage, RecordsRequest };

/** The workflow type (this function's name), as clients start it. */
export const RECORDS_WORKFLOW = 'records';

// Short: a person is waiting. The client bounds the whole workflow too (its execution timeout).
const { readRecords } = proxyActivities<OrchestratorActivities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1s', maximumAttempts: 3 },
});

export async function records(request: RecordsRequest): Promise<RecordsPage> {
  return readRecords(request);
}
