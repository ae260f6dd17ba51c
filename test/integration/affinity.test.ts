import { afterEach, describe, expect, it } from 'vitest';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { waitFor } from '../helpers/wire.js';

// Affinity: worker-local state per connection ('connection') or per key (the module's
// affinityKey export) stays right under pipelined load on 2 real workers.

const PLAIN = `${FIXTURES}affinity.js`;
const KEYED = `${FIXTURES}affinity-keyed.js`;

let running: Running | null = null;
afterEach(async () => {
  await running?.close();
  running = null;
});

/** Replies "<threadId>:<n>" split into their parts. */
const parse = (b: Buffer): [number, number] => {
  const [t, n] = b.toString().split(':');
  return [Number(t), Number(n)];
};

describe("affinity: 'connection'", () => {
  it("each connection's messages run on one worker, in order: its worker-local count is 1..N, connections spread over both workers", async () => {
    const s = (running = await start({ handler: PLAIN, workers: 2, affinity: 'connection' }));
    const conns = 8;
    const perConn = 400;
    const clients = await Promise.all(Array.from({ length: conns }, () => s.client()));
    const replies = await Promise.all(clients.map((c) => Promise.all(Array.from({ length: perConn }, () => c.request('x:conn')))));
    const threadsUsed = new Set<number>();
    for (const r of replies) {
      const parsed = r.map(parse);
      const threads = new Set(parsed.map(([t]) => t));
      expect(threads.size).toBe(1);
      threadsUsed.add(parsed[0]![0]);
      expect(parsed.map(([, n]) => n)).toEqual(Array.from({ length: perConn }, (_, i) => i + 1));
    }
    expect(threadsUsed.size).toBe(2);
  });

  it('never runs inline on the main thread, even for a cheap handler under offload auto', async () => {
    const s = (running = await start({ handler: PLAIN, workers: 2, affinity: 'connection', offload: 'auto' }));
    const c = await s.client();
    // One at a time: the offload measures each kind before it would move it inline.
    const replies: Buffer[] = [];
    for (let i = 0; i < 300; i++) replies.push(await c.request('x:conn'));
    const parsed = replies.map(parse);
    expect(parsed.map(([, n]) => n)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
    expect(parsed.every(([t]) => t !== 0)).toBe(true); // threadId 0 is the main thread
    const stats = (s.server.dispatcher.current as unknown as { offloadStats(): { inlineMessages: number } }).offloadStats();
    expect(stats.inlineMessages).toBe(0);
  });

  it('is an option the CLI and the validator know', async () => {
    await expect(start({ handler: PLAIN, workers: 2, affinity: 'session' as never })).rejects.toMatchObject({ code: 'SHOAL_INVALID_OPTION' });
  });
});

describe('keyed affinity (affinityKey export)', () => {
  it('messages with one key run on one worker one at a time, in order, from many pipelining connections', async () => {
    const s = (running = await start({ handler: KEYED, workers: 2 }));
    const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
    const clients = await Promise.all(Array.from({ length: 6 }, () => s.client()));
    const perClientPerKey = 150;
    const all = await Promise.all(
      clients.map((c) =>
        Promise.all(Array.from({ length: perClientPerKey * keys.length }, (_, i) => c.request(`${keys[i % keys.length]}:n`).then((b) => [keys[i % keys.length]!, parse(b)] as const))),
      ),
    );
    const threadOfKey = new Map<string, Set<number>>();
    const counts = new Map<string, number[]>();
    for (const perClient of all) {
      const lastSeen = new Map<string, number>();
      for (const [k, [t, n]] of perClient) {
        (threadOfKey.get(k) ?? threadOfKey.set(k, new Set()).get(k)!).add(t);
        (counts.get(k) ?? counts.set(k, []).get(k)!).push(n);
        // One connection's messages of a key are counted in its send order.
        expect(n).toBeGreaterThan(lastSeen.get(k) ?? 0);
        lastSeen.set(k, n);
      }
    }
    for (const k of keys) {
      expect(threadOfKey.get(k)!.size).toBe(1);
      // Every message of the key counted exactly once, on its one worker.
      expect(counts.get(k)!.sort((x, y) => x - y)).toEqual(Array.from({ length: clients.length * perClientPerKey }, (_, i) => i + 1));
    }
    // The keys spread over both workers.
    expect(new Set([...threadOfKey.values()].map((t) => [...t][0])).size).toBe(2);
  });

  it('an async handler: the next message of its worker waits for it (never two at once), in order', async () => {
    const s = (running = await start({ handler: KEYED, workers: 2 }));
    const clients = await Promise.all(Array.from({ length: 4 }, () => s.client()));
    const replies = await Promise.all(clients.map((c) => Promise.all(Array.from({ length: 60 }, () => c.request('k:async')))));
    const flat = replies.flat().map((b) => b.toString());
    expect(flat.filter((r) => r === 'overlap')).toEqual([]);
    expect(flat.map((r) => Number(r.split(':')[1])).sort((x, y) => x - y)).toEqual(Array.from({ length: 240 }, (_, i) => i + 1));
  });

  it('a message without a key runs on any worker (or inline) while keyed ones keep their worker', async () => {
    const s = (running = await start({ handler: KEYED, workers: 2 }));
    const c = await s.client();
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => c.request(i % 2 === 0 ? 'k:n' : '-:n')));
    const keyed = replies.filter((_, i) => i % 2 === 0).map(parse);
    expect(new Set(keyed.map(([t]) => t)).size).toBe(1);
    expect(keyed.map(([, n]) => n)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it("a worker's death loses its state: 'affinityLost' is emitted, the key's later messages run on the replacement from a fresh state", async () => {
    const s = (running = await start({ handler: KEYED, workers: 2, offload: 'always' }));
    const lost: { threadId: number; reason: string }[] = [];
    s.server.on('affinityLost', (info: { threadId: number; reason: string }) => lost.push(info));
    const c = await s.client();
    const before = await Promise.all(Array.from({ length: 5 }, () => c.request('k:n')));
    const [deadThread] = parse(before[0]!);
    const other = await s.client();
    await expect(other.request('k:die')).rejects.toBeDefined();
    await waitFor(() => lost.length > 0, 'affinityLost');
    expect(lost[0]).toMatchObject({ threadId: deadThread, reason: 'exit' });
    const after = parse(await c.request('k:n'));
    expect(after[0]).not.toBe(deadThread);
    expect(after[1]).toBe(1);
  });

  it('the MAIN_THREAD key runs on the main thread, in order, with its state there; a costly keyless kind stays in the pool', async () => {
    const s = (running = await start({ handler: KEYED, workers: 2 }));
    const clients = await Promise.all(Array.from({ length: 4 }, () => s.client()));
    // Many cheap main-thread messages and a costly keyless one, interleaved: the cheap ones
    // must not teach the offload that the (one, unrouted) kind is cheap.
    const all = await Promise.all(
      clients.map((c) => Promise.all(Array.from({ length: 200 }, (_, i) => c.request(i % 10 === 9 ? '-:spin' : 'main:n')))),
    );
    const main = all.flat().filter((_, i) => i % 10 !== 9).map(parse);
    expect(new Set(main.map(([t]) => t))).toEqual(new Set([0])); // threadId 0: the main thread
    expect(main.map(([, n]) => n).sort((x, y) => x - y)).toEqual(Array.from({ length: 720 }, (_, i) => i + 1));
    const spins = all.flat().filter((_, i) => i % 10 === 9).map((b) => Number(b.toString()));
    expect(spins.filter((t) => t === 0)).toEqual([]);
  });

  it("a reload starts every key's state afresh in the new pool, and says so with 'affinityLost'", async () => {
    const s = (running = await start({ handler: KEYED, workers: 2 }));
    const lost: { threadId: number; reason: string }[] = [];
    s.server.on('affinityLost', (info: { threadId: number; reason: string }) => lost.push(info));
    const c = await s.client();
    for (let i = 0; i < 3; i++) await c.request('k:n');
    await s.server.reload();
    expect(lost).toEqual([{ threadId: -1, reason: 'reload' }]);
    expect(parse(await c.request('k:n'))[1]).toBe(1);
  });

  it("with affinity 'connection' as well, the server does not start: choose one", async () => {
    await expect(start({ handler: KEYED, workers: 2, affinity: 'connection' })).rejects.toMatchObject({ code: 'SHOAL_HANDLER_LOAD_FAILED' });
  });
});
