// What a person says to a running campaign, from the CLI (`nightlab pause|resume|stop|steer`) or the
// dashboard's buttons: the workflow's signals and its steer update (workflows/messages.ts).
//   pause:  start no new run; runs already going finish and are recorded; the rest waits for resume.
//   resume: start experiments again after a pause.
//   stop:   start no new run; runs already going finish and are recorded; experiments not yet running are dropped; then the campaign ends (stopped).
//   steer:  a note added to the next proposals' context, or instructions that replace program.md.
import { WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { campaignWorkflowId, isEnded } from '../common/shared';
import { pauseSignal, resumeSignal, steerUpdate, stopSignal, type SteerInput } from '../workflows/messages';
import { campaignStatus } from './campaigns';

const SIGNALS = { pause: pauseSignal, resume: resumeSignal, stop: stopSignal } as const;
export type Control = keyof typeof SIGNALS;
export const CONTROLS = Object.keys(SIGNALS) as Control[];

/** The campaign has ended: nothing listens to its signals any more (the dashboard answers 409). */
export class CampaignEnded extends Error {}

/** The workflow refused the steer (empty, too long): the message says why (the dashboard answers 400). */
export class SteerRefused extends Error {}

/** Pauses, resumes or stops a campaign; CampaignNotFound or CampaignEnded when there is none to tell. */
export async function sendControl(client: Client, tag: string, control: Control): Promise<void> {
  const handle = await liveCampaign(client, tag, control);
  await handle.signal(SIGNALS[control]);
}

/** Steers a campaign; resolves to the number of notes now in the proposer's context. */
export async function steerCampaign(client: Client, tag: string, steer: SteerInput): Promise<{ notes: number }> {
  const handle = await liveCampaign(client, tag, 'steer');
  try {
    return await handle.executeUpdate(steerUpdate, { args: [steer] });
  } catch (e) {
    if (e instanceof WorkflowUpdateFailedError)
      throw new SteerRefused(`steering refused: ${e.cause?.message ?? e.message}`);
    throw e;
  }
}

async function liveCampaign(client: Client, tag: string, what: string): Promise<WorkflowHandle> {
  const { state } = await campaignStatus(client, tag);
  if (isEnded(state)) throw new CampaignEnded(`campaign ${tag} has ended (${state}); nothing to ${what}`);
  return client.workflow.getHandle(campaignWorkflowId(tag));
}
