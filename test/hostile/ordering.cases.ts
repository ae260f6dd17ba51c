import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchReply, rawConnect, splitLengthFrames, waitFor, within } from '../helpers/wire.js';
import { withCanary } from './canary.js';
import { benchFrame, note, spawnServer } from './child.js';
import type { ChildServer } from './child.js';

// Pipelining clients that push ordering and the main thread: replies in order,
// nothing lost on half-close, heavy work never blocks the canary.

describe('pipelining (child server, CLI defaults)', () => {
  let srv: ChildServer;
  beforeAll(async () => {
    srv = await spawnServer([]);
  });
  afterAll(() => srv?.stop());

  it('1,000 requests then a half-close: all 1,000 replies, in order, then FIN', async () => {
    await withCanary(srv.port, async () => {
      const peer = await rawConnect(srv.port);
      const ks = Array.from({ length: 1000 }, (_, i) => (i % 7 === 0 ? 50 : 0)); // some cost a little CPU
      const payloads = ks.map((_, i) => Buffer.from(`req-${i}-${randomBytes(4).toString('hex')}`));
      // Every request, then FIN, in one go: the server must read on after seeing the FIN's data.
      peer.socket.end(Buffer.concat(ks.map((k, i) => benchFrame(k, payloads[i]!))));
      await within(peer.ended, 15_000, 'the server FIN after 1,000 replies');
      const replies = splitLengthFrames(peer.received());
      expect(replies.length).toBe(1000);
      for (let i = 0; i < 1000; i++) {
        const want = benchReply(ks[i]!, payloads[i]!);
        if (!replies[i]!.equals(want)) throw new Error(`reply ${i} is wrong: ${replies[i]!.toString('hex').slice(0, 64)}`);
      }
      await within(peer.closed, 5000, 'the socket closing');
      expect(peer.hadError()).toBeNull();
    });
  });

  it('cheap and heavy requests pipelined on one connection: every reply correct and in order, the canary never stalls', { timeout: 30_000 }, async () => {
    const t0 = Date.now();
    const { canary } = await withCanary(srv.port, async () => {
      const peer = await rawConnect(srv.port);
      // 400 requests; every 5th is heavy (K = 10000, ~5 ms of CPU in a worker), the rest are echoes.
      // 80 heavy ones keep both workers busy for ~0.2 s; the canary's requests queue behind them
      // in the pool but must never wait on the main thread.
      const ks = Array.from({ length: 400 }, (_, i) => (i % 5 === 4 ? 10_000 : 0));
      const payloads = ks.map((_, i) => Buffer.from(`mixed-${i}`));
      const wire = Buffer.concat(ks.map((k, i) => benchFrame(k, payloads[i]!)));
      // Sent in uneven slices, so frames straddle reads.
      for (let off = 0; off < wire.length; ) {
        const n = 1 + Math.floor(Math.random() * 700);
        peer.socket.write(wire.subarray(off, off + n));
        off += n;
      }
      const expected = ks.map((k, i) => benchReply(k, payloads[i]!));
      const total = expected.reduce((n, e) => n + 4 + e.length, 0);
      await waitFor(() => peer.received().length >= total, 'all 400 replies', 20_000, 20);
      const replies = splitLengthFrames(peer.received());
      expect(replies.length).toBe(400);
      for (let i = 0; i < 400; i++) {
        if (!replies[i]!.equals(expected[i]!)) throw new Error(`reply ${i} (K=${ks[i]}) is wrong or out of order: ${replies[i]!.toString('hex').slice(0, 64)}`);
      }
      peer.socket.end();
      await within(peer.closed, 5000, 'the socket closing');
    });
    note(`mixed cheap/heavy: ${Date.now() - t0} ms; canary ${canary.sent} probes, p50 ${canary.p50LatencyMs} ms, max ${canary.maxLatencyMs} ms`);
  });
});
