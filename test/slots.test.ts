// The campaign's slots (workflows/slots.ts), without a server: Temporal's `condition` is stood in for
// by a few lines that unblock waiters as the SDK does, one by one in the order they began to wait.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Slots, type Wait } from '../workflows/slots';

/** Waiters checked in the order they began to wait, again and again until none is unblocked (as the SDK does). */
class Conditions {
  private waiters: { fn: () => boolean; resolve: () => void }[] = [];

  readonly wait: Wait = (fn) =>
    new Promise((resolve) => {
      if (fn()) resolve();
      else this.waiters.push({ fn, resolve });
    });

  /** What a workflow task does after its jobs: unblock what can be, and let the unblocked code run. */
  async settle(): Promise<void> {
    for (;;) {
      await new Promise(setImmediate);
      const before = this.waiters.length;
      this.waiters = this.waiters.filter((w) => !(w.fn() && (w.resolve(), true)));
      if (this.waiters.length === before) return;
    }
  }
}

/** A run that ends when told to, and says when it started. */
function run(name: string, log: string[]) {
  let end!: () => void;
  const done = new Promise<void>((resolve) => (end = resolve));
  return {
    end,
    body: async () => {
      log.push(`start ${name}`);
      await done;
      log.push(`end ${name}`);
      return name;
    },
  };
}

test('slots: at most `size` runs at once; the others start in the order they asked, as slots free up', async () => {
  const conditions = new Conditions();
  const slots = new Slots(2, () => false, conditions.wait);
  const log: string[] = [];
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((name) => run(name, log));
  const results = [a, b, c, d].map((r) => slots.hold(r.body));
  await conditions.settle();
  assert.deepEqual(log, ['start a', 'start b'], 'two slots: two runs');
  b.end();
  await conditions.settle();
  assert.deepEqual(log.slice(2), ['end b', 'start c'], 'the first to ask takes the freed slot');
  a.end();
  c.end();
  d.end();
  await conditions.settle();
  assert.deepEqual(await Promise.all(results), ['a', 'b', 'c', 'd']);
  assert.deepEqual(
    log.filter((l) => l.startsWith('start')),
    ['start a', 'start b', 'start c', 'start d'],
  );
});

test('slots: none is taken while closed (paused), though free; the waiters go on when it opens', async () => {
  const conditions = new Conditions();
  let paused = true;
  const slots = new Slots(1, () => paused, conditions.wait);
  let took = false;
  const taking = slots.take().then((t) => (took = t));
  await conditions.settle();
  assert.equal(took, false, 'no slot while paused');
  paused = false;
  await conditions.settle();
  await taking;
  assert.equal(took, true, 'the slot once resumed');
});

test('slots: take() gives up as soon as `instead` holds, and then holds no slot', async () => {
  const conditions = new Conditions();
  const slots = new Slots(1, () => false, conditions.wait);
  assert.equal(await slots.take(), true, 'the only slot');
  let bestMoved = false;
  const waiting = slots.take(() => bestMoved);
  await conditions.settle();
  bestMoved = true;
  await conditions.settle();
  assert.equal(await waiting, false, 'gave up: no slot taken');
  slots.release();
  assert.equal(await slots.take(), true, 'the slot released is free again: the one that gave up took none');
  assert.equal(await slots.take(() => true), false, '`instead` is checked before a free slot');
});

test('slots: two waiters never both take one freed slot, and a run that throws releases its slot', async () => {
  const conditions = new Conditions();
  const slots = new Slots(1, () => false, conditions.wait);
  await assert.rejects(
    slots.hold(async () => Promise.reject(new Error('crashed'))),
    /crashed/,
  );
  assert.equal(await slots.take(), true, 'released by the run that threw');
  const got: number[] = [];
  const waiters = [1, 2].map((i) => slots.take().then(() => got.push(i)));
  await conditions.settle();
  assert.deepEqual(got, [], 'none free');
  slots.release();
  await conditions.settle();
  assert.deepEqual(got, [1], 'one slot freed: one waiter, the first');
  slots.release();
  await conditions.settle();
  await Promise.all(waiters);
  assert.deepEqual(got, [1, 2]);
});
