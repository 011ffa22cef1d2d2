// The workflows a Nightlab orchestrator worker registers.
export { campaign } from './campaign';
export { records } from './records-query';
