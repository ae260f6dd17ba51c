import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { CTL_HEAD, CTL_STOP, FIELDS, F_SHARD, STATE_FREE, WorkQueueReader, WorkQueueView, WorkQueueWriter, createWorkQueue, genOf, owned, PHASE_RUNNING, wakeAll } from '../../dist/src/dispatch/work-queue.js';
import { FIXTURES } from '../helpers/server.js';

/** Free the slots the takers gave back (done[s] = 1), as the pool does when a reply is in. */
function recycle(v: WorkQueueView, done: Int32Array, free: number[]): void {
  for (let s = 0; s < done.length; s++) {
    if (Atomics.load(done, s) === 1) {
      Atomics.store(done, s, 0);
      Atomics.store(v.state, s, STATE_FREE);
      free.push(s);
    }
  }
}

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
    const workers = [1, 2].map((gen) => new Worker(`${FIXTURES}queue-taker.js`, { workerData: { queue: b, gen, shard: 0, done } }));
    const results = workers.map((t) => once(t, 'message'));
    const free: number[] = Array.from({ length: slots }, (_, i) => i);
    const total = 50_000;
    let appended = 0;
    const order: number[] = [];
    while (appended < total) {
      recycle(v, done, free);
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
    wakeAll(v);
    const [a, c] = (await Promise.all(results)).map(([m]) => (m as { taken: number[] }).taken);
    expect(a!.length + c!.length).toBe(total);
    // Exactly once: per slot, the times it was taken equal the times it was queued.
    const queued = new Map<number, number>();
    for (const s of order) queued.set(s, (queued.get(s) ?? 0) + 1);
    const took = new Map<number, number>();
    for (const s of [...a!, ...c!]) took.set(s, (took.get(s) ?? 0) + 1);
    expect(took).toEqual(queued);
    await Promise.all(workers.map((t) => t.terminate()));
  });

  it("a shard's own queue: only its reader takes those messages, in order, ahead of the shared queue", () => {
    const b = createWorkQueue(8, 1024, 2);
    const v = new WorkQueueView(b);
    const w = new WorkQueueWriter(v);
    const r0 = new WorkQueueReader(new WorkQueueView(b), 0);
    const r1 = new WorkQueueReader(new WorkQueueView(b), 1);
    for (const s of [4, 2, 6]) {
      v.fields[s * FIELDS + F_SHARD] = 2; // shard 1, plus one
      w.appendOwn(s, 1);
    }
    w.append(0);
    expect(r0.hasOwn).toBe(false);
    expect(r0.takeOwn(1)).toBe(-1);
    expect(r1.hasOwn).toBe(true);
    expect([r1.takeOwn(2), r1.takeOwn(2), r1.takeOwn(2), r1.takeOwn(2)]).toEqual([4, 2, 6, -1]);
    expect(r0.take(1)).toBe(0);
    expect(v.ownDepth(1)).toBe(0);
  });

  it('a stale shared-queue position never takes a message since queued in a shard\'s own queue', () => {
    // What a worker sees when it read HEAD, then lost the race for that position: by the
    // time it tries the slot, the slot was answered, freed and queued again for shard 0.
    const b = createWorkQueue(8, 1024, 2);
    const v = new WorkQueueView(b);
    const w = new WorkQueueWriter(v);
    const r0 = new WorkQueueReader(v, 0);
    const r1 = new WorkQueueReader(v, 1);
    v.fields[5 * FIELDS + F_SHARD] = 0;
    w.append(5);
    expect(r1.take(2)).toBe(5);
    Atomics.store(v.state, 5, STATE_FREE);
    v.fields[5 * FIELDS + F_SHARD] = 1;
    w.appendOwn(5, 0);
    Atomics.store(v.ctl, CTL_HEAD, 0); // the stale reader's view of the shared queue: position 0 names slot 5
    expect(r1.take(2)).toBe(-1);
    expect(r0.takeOwn(1)).toBe(5);
    expect(genOf(Atomics.load(v.state, 5))).toBe(1);
  });

  it('two real threads with own queues: each takes exactly its own messages, in the order appended, plus a share of the shared ones', async () => {
    const slots = 256;
    const b = createWorkQueue(slots, 1024, 2);
    const v = new WorkQueueView(b);
    const w = new WorkQueueWriter(v);
    const done = new Int32Array(new SharedArrayBuffer(slots * 4));
    const workers = [0, 1].map((shard) => new Worker(`${FIXTURES}queue-taker.js`, { workerData: { queue: b, gen: shard + 1, shard, done } }));
    const results = workers.map((t) => once(t, 'message'));
    const free: number[] = Array.from({ length: slots }, (_, i) => i);
    const total = 30_000;
    const ownOrder: number[][] = [[], []];
    let appended = 0;
    while (appended < total) {
      recycle(v, done, free);
      while (free.length > 0 && appended < total && w.hasRoom) {
        const s = free.pop()!;
        const shard = appended % 3; // 0 and 1: that shard's own queue; 2: the shared queue
        if (shard < 2) {
          v.fields[s * FIELDS + F_SHARD] = shard + 1;
          w.appendOwn(s, shard);
          w.wakeShard(shard);
          ownOrder[shard]!.push(s);
        } else {
          v.fields[s * FIELDS + F_SHARD] = 0;
          w.append(s);
          if (w.sleepers > 0) w.wake(1);
        }
        appended++;
      }
      await new Promise((r) => setImmediate(r));
    }
    while (v.depth > 0 || v.ownDepth(0) > 0 || v.ownDepth(1) > 0) await new Promise((r) => setImmediate(r));
    Atomics.store(v.ctl, CTL_STOP, 1);
    wakeAll(v);
    const got = (await Promise.all(results)).map(([m]) => m as { taken: number[]; own: number[] });
    expect(got[0]!.own).toEqual(ownOrder[0]);
    expect(got[1]!.own).toEqual(ownOrder[1]);
    expect(got[0]!.taken.length + got[1]!.taken.length).toBe(total);
    await Promise.all(workers.map((t) => t.terminate()));
  });
});
