// The campaign's messages: what a person (CLI, dashboard) can say to a running campaign.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { CampaignSnapshot } from '../common/shared';

/** Finish the running experiment, then wait until resumed. */
export const pauseSignal = defineSignal<[]>('pause');
export const resumeSignal = defineSignal<[]>('resume');
/** Finish the running experiment, then end the campaign as `stopped`. */
export const stopSignal = defineSignal<[]>('stop');
export const statusQuery = defineQuery<CampaignSnapshot>('status');

export interface SteerInput {
  note?: string;
  /** New instructions text (replaces program.md for the next proposals). */
  instructions?: string;
}
/** Changes what the next proposals see; validated, and recorded in history. */
export const steerUpdate = defineUpdate<{ notes: number }, [SteerInput]>('steer');
