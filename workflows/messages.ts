// The campaign's messages: what a person (CLI, dashboard) can say to a running campaign.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { CampaignSnapshot } from '../common/shared';

/** Start no new run; runs already going finish and are recorded; the rest waits for resume. */
export const pauseSignal = defineSignal<[]>('pause');
export const resumeSignal = defineSignal<[]>('resume');
/** Start no new run; runs already going finish and are recorded; experiments not yet running are dropped; then the campaign ends (stopped). */
export const stopSignal = defineSignal<[]>('stop');
/** The snapshot `nightlab status` shows. */
export const statusQuery = defineQuery<CampaignSnapshot>('status');

export interface SteerInput {
  note?: string;
  /** New instructions text (replaces program.md for the next proposals). */
  instructions?: string;
}
/** Changes what the next proposals see; validated, and recorded in history. */
export const steerUpdate = defineUpdate<{ notes: number }, [SteerInput]>('steer');
