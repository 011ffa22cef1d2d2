// A run's learning curve, read from its output as it streams, and its early stop: a candidate's first
// run whose curve, extrapolated to its end, is clearly worse than the best's is stopped (common/early-stop.ts
// decides; docs/judging.md). Progress lines are the candidate's own output: they can stop a run, which
// is then a discard, never keep one.
import { ProgressReader, thinCurve, type Curve } from '../common/curves';
import { earlyStop } from '../common/early-stop';
import type { RunRequest } from '../common/shared';

export class RunProgress {
  private readonly reader: ProgressReader | null;
  /** The early stop's evidence, once it has stopped the run. */
  stoppedFor: string | null = null;

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
    if (!es || this.stoppedFor !== null) return;
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

  /** The curve as records keep it (thinned), or nothing when the run printed no progress line. */
  curve(): Curve | undefined {
    const curve = this.reader?.curve ?? [];
    return curve.length ? thinCurve(curve) : undefined;
  }
}
