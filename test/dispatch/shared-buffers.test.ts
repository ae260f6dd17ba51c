import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { amplifyReply, amplifyRequest } from '../helpers/amplify.js';
import { exchange, rawConnect, sleep, splitLengthFrames, waitFor, within } from '../helpers/wire.js';

// Batches travel in shared buffers that each slot reuses (src/dispatch/protocol.ts).
// These runs catch what reuse could break: replies larger than the slot's output
// (the worker grows it), and replies still queued on a socket when the slot's next
// batch overwrites its buffers (the main thread must have copied them out).

/** The first index where `got` differs from the reply to (size, seed), or -1. */
function firstDiff(got: Buffer, size: number, seed: number): number {
  const want = amplifyReply(size, seed);
  if (got.length !== size) return Math.min(got.length, size);
  for (let i = 0; i < size; i++) if (got[i] !== want[i]) return i;
  return -1;
}

describe('shared batch buffers, workers: 2', () => {
  let s: Running;
  beforeAll(async () => {
    s = await start({ handler: `${FIXTURES}amplify.js`, workers: 2, maxFrame: 4 * 1024 * 1024 });
  });
  afterAll(() => s.close());

  it('replies 40,000x larger than their requests (the output grows past its first size): every byte right', async () => {
    const sizes = [300_000, 17, 1_000_000, 0, 65_536, 2_000_000, 5, 300_000];
    const wire = await exchange(s.port, sizes.map((n, i) => amplifyRequest(n, i + 1)), 30_000);
    const got = splitLengthFrames(wire);
    expect(got.map((g) => g.length)).toEqual(sizes);
    got.forEach((g, i) => expect(firstDiff(g, sizes[i]!, i + 1), `reply ${i}`).toBe(-1));
  });

  it('replies held in send queues while their slots carry later batches: 4 connections, none corrupted', async () => {
    // Each connection pipelines requests for 1 MiB replies and reads nothing for a
    // while: more than the kernel's socket buffers hold, so replies queue on the main
    // thread as later batches reuse every slot.
    const perConn = 10;
    const size = 1024 * 1024;
    const peers = await Promise.all(Array.from({ length: 4 }, () => rawConnect(s.port)));
    peers.forEach((p, c) => {
      p.socket.pause();
      for (let k = 0; k < perConn; k++) p.socket.write(amplifyRequest(size, c * 1000 + k));
    });
    await sleep(300);
    const total = 4 + size;
    for (const p of peers) p.socket.resume();
    await within(
      waitFor(() => peers.every((p) => p.received().length >= perConn * total), 'every reply'),
      20_000,
      'replies',
    );
    peers.forEach((p, c) => {
      const got = splitLengthFrames(p.received());
      expect(got.length).toBe(perConn);
      got.forEach((g, k) => expect(firstDiff(g, size, c * 1000 + k), `connection ${c} reply ${k}`).toBe(-1));
      p.socket.destroy();
    });
  });
});
