import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { CTL_STOP, CTL_TAIL, STATE_FREE, WorkQueueReader, WorkQueueView, WorkQueueWriter, createWorkQueue, genOf, owned, PHASE_RUNNING } from '../../dist/src/dispatch/work-queue.js';
import { FIXTURES } from '../helpers/server.js';

describe('work queue', () => {
  it('one thread: takes in queue order, owner and phase in the slot state, empty is -1', () => {
    const b = createWorkQueue(8, 1024);
    const w = new WorkQueueWriter(new WorkQueueView(b));
    const r = new WorkQueueReader(new WorkQueueView(b));
    for (const s of [3, 1, 2]) w.append(s);
    expect([r.take(5), r.take(5), r.take(5), r.take(5)]).toEqual([3, 1, 2, -1]);
    const st = Atomics.load(r.view.state, 1);
    expect(st).toBe(owned(5, PHASE_RUNNING));
    expect(genOf(st)).toBe(5);
  });

  it('a stale position is skipped and a slot taken out of order is never taken twice', () => {
    const b = createWorkQueue(4, 1024);
    const v = new WorkQueueView(b);
    const w = new WorkQueueWriter(v);
    const r = new WorkQueueReader(v);
    w.append(0);
    w.append(1);
    // Another worker took slot 1 out of order (it read a stale head): only slot 0 is left.
    Atomics.compareExchange(v.state, 1, 1, owned(9, PHASE_RUNNING));
    expect(r.take(2)).toBe(0);
    expect(r.take(2)).toBe(-1);
    expect(v.depth).toBe(0);
  });

  it('two real threads pulling from one queue take every one of 50,000 messages exactly once', async () => {
    const slots = 256;
    const b = createWorkQueue(slots, 1024);
    const v = new WorkQueueView(b);
    const w = new WorkQueueWriter(v);
    const done = new Int32Array(new SharedArrayBuffer(slots * 4));
    const workers = [1, 2].map((gen) => new Worker(`${FIXTURES}queue-taker.js`, { workerData: { queue: b, gen, done } }));
    const results = workers.map((t) => once(t, 'message'));
    const free: number[] = Array.from({ length: slots }, (_, i) => i);
    const total = 50_000;
    let appended = 0;
    const order: number[] = [];
    while (appended < total) {
      // Recycle the slots the takers gave back, as the pool does.
      for (let s = 0; s < slots; s++) {
        if (Atomics.load(done, s) === 1) {
          Atomics.store(done, s, 0);
          Atomics.store(v.state, s, STATE_FREE);
          free.push(s);
        }
      }
      while (free.length > 0 && appended < total && w.hasRoom) {
        const s = free.pop()!;
        w.append(s);
        order.push(s);
        appended++;
      }
      if (w.sleepers > 0) w.wake(2);
      await new Promise((r) => setImmediate(r));
    }
    // Let them finish what is queued, then stop.
    while (v.depth > 0) await new Promise((r) => setImmediate(r));
    Atomics.store(v.ctl, CTL_STOP, 1);
    Atomics.notify(v.ctl, CTL_TAIL);
    const [a, c] = (await Promise.all(results)).map(([m]) => m as number[]);
    expect(a!.length + c!.length).toBe(total);
    // Exactly once: per slot, the times it was taken equal the times it was queued.
    const queued = new Map<number, number>();
    for (const s of order) queued.set(s, (queued.get(s) ?? 0) + 1);
    const took = new Map<number, number>();
    for (const s of [...a!, ...c!]) took.set(s, (took.get(s) ?? 0) + 1);
    expect(took).toEqual(queued);
    await Promise.all(workers.map((t) => t.terminate()));
  });
});
