// A run's learning curve, read from its output as it streams, and its early stop: a candidate's first
// run whose curve, extrapolated to its end, is clearly worse than the best's is stopped (common/early-stop.ts
// decides; docs/judging.md). Progress lines are the candidate's own output: they can stop a run, which
// is then a discard, never keep one.
import { ProgressReader, thinCurve, type Curve } from '../common/curves';
import { earlyStop } from '../common/early-stop';
import type { RunRequest } from '../common/shared';

/** The rule is asked again once the run has gone this much further (a share of its budget). */
const CHECK_EVERY = 0.01;
/** Past this share of its budget a run is never stopped: it is nearly done, and its figure is what counts. */
const LAST_STOP_AT = 0.95;

export class RunProgress {
  private readonly reader: ProgressReader | null;
  /** The early stop's evidence, once it has stopped the run. */
  stoppedFor: string | null = null;
  /** Where the rule was last asked; after `close` (the run has ended) it is never asked again. */
  private checkedAt = -Infinity;
  private closed = false;

  constructor(
    private readonly req: Pick<RunRequest, 'progress' | 'earlyStop'>,
    /** Kills the run's process group. */
    private readonly stop: () => void,
  ) {
    this.reader = req.progress ? new ProgressReader(req.progress) : null;
  }

  /** Reads a chunk of the run's output; stops the run when its curve says so. */
  feed(chunk: string): void {
    if (!this.reader || !this.reader.feed(chunk).length) return;
    const { earlyStop: es, progress } = this.req;
    if (!es || this.stoppedFor !== null || this.closed) return;
    const at = this.reader.curve.at(-1)!.at;
    if (at >= LAST_STOP_AT || at < this.checkedAt + CHECK_EVERY) return;
    this.checkedAt = at;
    const { reference, ...settings } = es;
    const verdict = earlyStop(this.reader.curve, reference, {
      ...settings,
      direction: progress!.direction,
      name: progress!.name,
    });
    if (!verdict) return;
    this.stoppedFor = verdict.evidence;
    this.stop();
  }

  /** The run has ended: what it prints now stops nothing. */
  close(): void {
    this.closed = true;
  }

  /** The curve as records keep it (thinned), or nothing when the run printed no progress line. */
  curve(): Curve | undefined {
    const curve = this.reader?.curve ?? [];
    return curve.length ? thinCurve(curve) : undefined;
  }
}
