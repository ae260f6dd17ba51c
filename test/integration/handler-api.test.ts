import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { exchange, lengthFrame, splitLengthFrames } from '../helpers/wire.js';

// The handler API a user writes, through real sockets, for `workers: 0` and
// `workers: 2`: what a handler may return, what ctx tells it, and the module
// forms the runtime loads.

const MULTI = `${FIXTURES}multi.js`;

/** Send `messages` as length frames on one connection (then FIN); the reply frames as strings. */
async function replies(port: number, messages: string[]): Promise<string[]> {
  const wire = await exchange(port, Buffer.concat(messages.map(lengthFrame)));
  return splitLengthFrames(wire).map(String);
}

describe.each([0, 2])('what a handler returns, workers: %i', (workers) => {
  let s: Running;
  beforeAll(async () => {
    s = await start({ handler: MULTI, workers, codec: 'utf8' });
  });
  afterAll(() => s.close());

  it('nothing, one frame, several frames, a Promise, ctx.send: frames in request order', async () => {
    const got = await replies(s.port, [
      'none', // undefined: no frame
      'one:A',
      'null', // null: no frame
      'many:b,c,d', // an array: three frames
      'empty-list', // an empty array: no frame
      'promise:30,E', // a Promise that resolves after the later messages are done
      'one:F',
      'promise-many:g,h', // a Promise of an array
      'send:I', // ctx.send twice, then a return value
      'send-only:J', // ctx.send, returns nothing
      'send-async:K', // ctx.send after an await
      'bytes:00ff10', // a Buffer
      'one:', // an empty string: one empty frame
      'one:L',
    ]);
    expect(got).toEqual([
      'A',
      'b', 'c', 'd',
      'E',
      'F',
      'g', 'h',
      'first-I', 'second-I', 'last-I',
      'only-J',
      'early-K', 'late-K',
      Buffer.from([0x00, 0xff, 0x10]).toString(),
      '',
      'L',
    ]);
  });

  it('a thousand "none" messages then one reply: the connection is not stuck on the silent ones', async () => {
    const got = await replies(s.port, [...Array.from({ length: 1000 }, () => 'none'), 'one:after']);
    expect(got).toEqual(['after']);
  });

  it('ctx: connectionId per connection, sequence per message, remoteAddress and remotePort of the peer', async () => {
    const c1 = await s.client();
    const c2 = await s.client();
    const ask = async (c: typeof c1, n: number) =>
      (await Promise.all(Array.from({ length: n }, () => c.request('ctx')))).map(
        (r) => JSON.parse(r.toString()) as { connectionId: number; sequence: number; remoteAddress: string; remotePort: number },
      );
    const [r1, r2] = await Promise.all([ask(c1, 20), ask(c2, 5)]);
    // One id per connection, different between connections, and the server's own id for it.
    expect(new Set(r1.map((r) => r.connectionId)).size).toBe(1);
    expect(new Set(r2.map((r) => r.connectionId)).size).toBe(1);
    expect(r1[0]!.connectionId).not.toBe(r2[0]!.connectionId);
    const serverIds = [...s.server.connections].map((conn) => conn.id);
    expect(serverIds).toContain(r1[0]!.connectionId);
    expect(serverIds).toContain(r2[0]!.connectionId);
    // Sequences count this connection's messages one by one; each connection has its own count.
    const seq1 = r1.map((r) => r.sequence);
    const seq2 = r2.map((r) => r.sequence);
    expect(seq1).toEqual(Array.from({ length: 20 }, (_, i) => seq1[0]! + i));
    expect(seq2).toEqual(Array.from({ length: 5 }, (_, i) => seq2[0]! + i));
    expect(seq1[0]).toBe(0); // README: per connection, from 0
    expect(seq2[0]).toBe(0);
    // The peer as the server sees it: our own end of the socket.
    for (const r of r1) {
      expect(r.remoteAddress).toBe('127.0.0.1');
      expect(r.remotePort).toBe(c1.socket.localPort);
    }
    expect(r2[0]!.remotePort).toBe(c2.socket.localPort);
  });
});

describe.each([0, 2])('module forms, workers: %i', (workers) => {
  it('a named `handler` export', async () => {
    const s = await start({ handler: `${FIXTURES}named-handler.js`, workers });
    try {
      const c = await s.client();
      expect((await c.request('x')).toString()).toBe('named:x');
    } finally {
      await s.close();
    }
  });

  it('a CommonJS module (module.exports = { setup, handler }), given as a file URL', async () => {
    const s = await start({ handler: new URL('../fixtures/commonjs-handler.cjs', import.meta.url), workers });
    try {
      const c = await s.client();
      const got = await Promise.all([c.request('a'), c.request('b')]);
      // setup() ran (count >= 1) before the first message; sequences 0-based or not, they step by one.
      const [a, b] = got.map((r) => r.toString().split(':'));
      expect(a![0]).toBe('cjs');
      expect(a![1]).toBe('a');
      expect(Number(a![2])).toBeGreaterThanOrEqual(1);
      expect(Number(b![3])).toBe(Number(a![3]) + 1);
    } finally {
      await s.close();
    }
  });
});

describe('setup() and teardown() run once per worker', () => {
  let dir: string;
  let log: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-setup-'));
    log = join(dir, 'log');
    process.env.SHOAL_TEST_LOG = log;
  });
  afterEach(() => {
    delete process.env.SHOAL_TEST_LOG;
    rmSync(dir, { recursive: true, force: true });
  });
  const lines = (): string[] => {
    try {
      return readFileSync(log, 'utf8').trim().split('\n').filter(Boolean);
    } catch {
      return [];
    }
  };

  it('workers: 2: two setups before listen() resolves, every message served by a set-up worker, two teardowns on close', async () => {
    // offload 'always': every message runs in a worker (the main thread loads no handler).
    const s = await start({ handler: `${FIXTURES}setup-log.js`, workers: 2, offload: 'always' });
    let closed = false;
    try {
      // Warm before listening: both workers have run setup() already.
      const setups = lines().filter((l) => l.startsWith('setup '));
      expect(setups).toHaveLength(2);
      const threads = new Set(setups.map((l) => l.split(' ')[1]));
      expect(threads.size).toBe(2);
      expect(threads.has('0')).toBe(false); // worker threads, not the main thread
      // Each setup got its own thread id.
      for (const l of setups) expect(l.split(' ')[2]).toBe(l.split(' ')[1]);

      const clients = await Promise.all(Array.from({ length: 4 }, () => s.client()));
      const got = await Promise.all(clients.flatMap((c) => Array.from({ length: 200 }, () => c.request('who'))));
      for (const r of got) {
        const [thread, count] = r.toString().split(':');
        expect(threads.has(thread!)).toBe(true);
        expect(count).toBe('1'); // setup ran exactly once in the thread that served it
      }
      expect(lines().filter((l) => l.startsWith('setup '))).toHaveLength(2); // no more setups under load
      await s.close();
      closed = true;
      const teardowns = lines().filter((l) => l.startsWith('teardown '));
      expect(teardowns.map((l) => l.split(' ')[1]).sort()).toEqual([...threads].sort());
    } finally {
      if (!closed) await s.close();
    }
  });

  it("workers: 0: one setup on the server's own thread, one teardown", async () => {
    const s = await start({ handler: `${FIXTURES}setup-log.js`, workers: 0 });
    const me = String(threadId);
    let closed = false;
    try {
      expect(lines()).toEqual([`setup ${me} 0`]);
      const c = await s.client();
      const got = await Promise.all(Array.from({ length: 50 }, () => c.request('who')));
      for (const r of got) expect(r.toString().split(':')[0]).toBe(me);
      expect(lines()).toEqual([`setup ${me} 0`]);
      await s.close();
      closed = true;
      expect(lines()).toEqual([`setup ${me} 0`, `teardown ${me}`]);
    } finally {
      if (!closed) await s.close();
    }
  });
});
