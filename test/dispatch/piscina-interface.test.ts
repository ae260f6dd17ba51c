import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { afterEach, describe, expect, it } from 'vitest';
import { cacheWorkerInterfaces } from '../../dist/src/dispatch/piscina-interface.js';

// Piscina builds its worker views afresh on every run(); shoal caches one per worker
// (garbage that reached the old generation at 20k requests/s). The cached view must
// still be a live view: usage, id and a replaced worker read as Piscina's own would.

const WAIT = fileURLToPath(new URL('../fixtures/piscina-wait.js', import.meta.url));

interface Seen {
  views: object[];
  usage: number[];
  ids: number[];
}

type View = { id: number; currentUsage: number };

function pool(seen: Seen): Piscina {
  return new Piscina({
    filename: WAIT,
    minThreads: 1,
    maxThreads: 1,
    concurrentTasksPerWorker: 2,
    idleTimeout: 60_000,
    loadBalancer: (_task, workers) => {
      const w = workers[0];
      if (w === undefined) return null;
      cacheWorkerInterfaces(w);
      seen.views.push(w);
      seen.usage.push((w as unknown as View).currentUsage);
      seen.ids.push((w as unknown as View).id);
      return w;
    },
  });
}

let p: Piscina | null = null;
afterEach(async () => {
  await p?.destroy();
  p = null;
});

describe('cacheWorkerInterfaces', () => {
  it('hands the balancer one view per worker, reading the worker live', async () => {
    const seen: Seen = { views: [], usage: [], ids: [] };
    p = pool(seen);
    const first = await p.run({ ms: 1 });
    // Two at once: the second is placed while the first runs on the same worker.
    const both = await Promise.all([p.run({ ms: 50 }), p.run({ ms: 1 })]);
    expect(seen.views.length).toBeGreaterThanOrEqual(3);
    // The first view was built before the cache was in place; every later one is the same object.
    expect(new Set(seen.views.slice(1)).size).toBe(1);
    expect(seen.usage.slice(-2)).toEqual([0, 1]); // live: the first of the pair was running
    expect(new Set([first, ...both, ...seen.ids])).toEqual(new Set([first]));
  });

  it('a replacement worker gets a view of its own', async () => {
    const seen: Seen = { views: [], usage: [], ids: [] };
    p = pool(seen);
    const before = await p.run({ ms: 1 });
    const old = seen.views.at(-1)!;
    const dead = new Promise<void>((resolve) => p!.once('workerDestroy', () => resolve()));
    await p.threads[0]!.terminate();
    await dead;
    const after = await p.run({ ms: 1 });
    expect(after).not.toBe(before);
    expect(seen.views.at(-1)).not.toBe(old);
    expect(seen.ids.at(-1)).toBe(after);
    expect((old as unknown as View).id).toBe(-1); // the old view still reads its (exited) worker
  });
});
