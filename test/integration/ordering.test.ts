import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, benchBody, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';

// Pipelining and ordering over real sockets and two real worker threads: the
// connection must release replies strictly in request order even though the
// frames of one connection run on both workers at once and cheap ones finish first.

/** Expected bench-protocol reply, memoized by (K, payload). */
const memo = new Map<string, Buffer>();
function expected(k: number, payload: Buffer): Buffer {
  if (k === 0) return payload;
  const key = `${k}:${payload.toString('hex')}`;
  let d = memo.get(key);
  if (!d) {
    d = createHash('sha256').update(payload).digest();
    for (let i = 1; i < k; i++) d = createHash('sha256').update(d).digest();
    memo.set(key, d);
  }
  return d;
}

/** A deterministic pseudo-random sequence (no flaky inputs). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

describe('ordering over one connection, workers: 2', () => {
  let s: Running;
  beforeAll(async () => {
    s = await start({ handler: EXAMPLES.bench, workers: 2 });
  });
  afterAll(() => s.close());

  it('10,000 pipelined requests with mixed K arrive in order, each with its own reply', async () => {
    const rnd = lcg(42);
    const c = await s.client();
    const ks: number[] = [];
    const payloads: Buffer[] = [];
    const replies: Promise<Buffer>[] = [];
    for (let i = 0; i < 10_000; i++) {
      // Mostly cheap echoes and short chains, now and then a heavier one that finishes late.
      const r = rnd();
      const k = r < 0.5 ? 0 : r < 0.97 ? 1 + Math.floor(rnd() * 8) : 200 + Math.floor(rnd() * 300);
      // Unique payload per request: a reply landing in the wrong slot cannot match by chance.
      const payload = Buffer.from(`req-${i}-${'x'.repeat(i % 37)}`);
      ks.push(k);
      payloads.push(payload);
      replies.push(c.request(benchBody(k, payload)));
    }
    const got = await Promise.all(replies);
    let mismatches = 0;
    let first = -1;
    for (let i = 0; i < got.length; i++) {
      if (!got[i]!.equals(expected(ks[i]!, payloads[i]!))) {
        mismatches++;
        if (first < 0) first = i;
      }
    }
    expect({ mismatches, first }).toEqual({ mismatches: 0, first: -1 });
    // The frames really went through the pool (not a shortcut on the main thread).
    expect(s.server.stats().dispatcher.framesSent).toBeGreaterThanOrEqual(10_000);
  }, 60_000);

  it('a slow request at the head: the fast ones behind it still get their own replies, in order', async () => {
    const c = await s.client();
    const heavy = c.request(benchBody(30_000, 'head'));
    const light = Array.from({ length: 50 }, (_, i) => c.request(benchBody(0, `light-${i}`)));
    const [h, ...rest] = await Promise.all([heavy, ...light]);
    expect(h).toEqual(expected(30_000, Buffer.from('head')));
    expect(rest.map((r) => r.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `light-${i}`));
  });
});

describe('many connections at once', () => {
  it.each([0, 2])('200 connections, each pipelining 20 requests, workers: %i', async (workers) => {
    const s = await start({ handler: EXAMPLES.bench, workers });
    try {
      const clients = await Promise.all(Array.from({ length: 200 }, () => s.client()));
      await Promise.all(
        clients.map(async (c, ci) => {
          const reqs = Array.from({ length: 20 }, (_, i) => {
            const k = (ci + i) % 3; // 0 (echo), 1, 2
            const payload = Buffer.from(`conn-${ci}-req-${i}`);
            return c.request(benchBody(k, payload)).then((r) => ({ r, k, payload }));
          });
          for (const { r, k, payload } of await Promise.all(reqs)) {
            expect(r.equals(expected(k, payload))).toBe(true);
          }
        }),
      );
      const stats = s.server.stats();
      expect(stats.connections.active).toBe(200);
      expect(stats.counters.connectionsAccepted).toBe(200);
      expect(stats.counters.framesIn).toBe(4000);
      expect(stats.counters.repliesOut).toBe(4000);
    } finally {
      await s.close();
    }
  });
});

describe('the queue to the pool is full', () => {
  it('reading pauses on every connection and resumes; 20 connections x 200 pipelined still get every reply in order', async () => {
    const s = await start({ handler: EXAMPLES.bench, workers: 2, maxPendingFrames: 32 });
    let saturated = 0;
    let unsaturated = 0;
    s.server.dispatcher.on('saturated', () => saturated++);
    s.server.dispatcher.on('unsaturated', () => unsaturated++);
    try {
      const clients = await Promise.all(Array.from({ length: 20 }, () => s.client()));
      await Promise.all(
        clients.map(async (c, ci) => {
          const payloads = Array.from({ length: 200 }, (_, i) => Buffer.from(`c${ci}-${i}`));
          const got = await Promise.all(payloads.map((p, i) => c.request(benchBody(i % 5 === 0 ? 20 : 0, p))));
          got.forEach((r, i) => expect(r.equals(expected(i % 5 === 0 ? 20 : 0, payloads[i]!))).toBe(true));
        }),
      );
      // The budget was really hit, and really lifted.
      expect(saturated).toBeGreaterThan(0);
      expect(unsaturated).toBeGreaterThan(0);
      expect(s.server.stats().dispatcher.saturated).toBe(false);
      expect(s.server.stats().connections.paused).toBe(0);
    } finally {
      await s.close();
    }
  });
});
