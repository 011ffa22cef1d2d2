// The campaign's `parallelism` slots: a run starts only in a slot, so no more than `parallelism`
// of the campaign's runs train at once, whatever the number of GPU workers. None is taken while
// the campaign is paused (the runs already in slots finish).
import { condition } from '@temporalio/workflow';

/** Waits until `fn` holds: Temporal's `condition`, which checks waiters one by one in the order they began to wait. */
export type Wait = (fn: () => boolean) => Promise<void>;

export class Slots {
  private free: number;

  /** `closed`: no slot may be taken now (paused). `wait` is for tests; a workflow uses `condition`. */
  constructor(
    size: number,
    private readonly closed: () => boolean,
    private readonly wait: Wait = condition,
  ) {
    this.free = size;
  }

  /**
   * Takes a slot (true), or gives up waiting as soon as `instead` holds (false). The slot is taken
   * inside the predicate: waiters are checked one by one in the order they started waiting, so two
   * of them can never both see the same free slot.
   */
  async take(instead: () => boolean = () => false): Promise<boolean> {
    let took = false;
    await this.wait(() => {
      if (instead()) return true;
      if (this.free === 0 || this.closed()) return false;
      this.free -= 1;
      took = true;
      return true;
    });
    return took;
  }

  release(): void {
    this.free += 1;
  }

  /** Runs `fn` in a slot, once one is free; the slot is released when it ends, however it ends. */
  async hold<T>(fn: () => Promise<T>): Promise<T> {
    await this.take();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}
