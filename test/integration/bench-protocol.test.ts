import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, benchBody, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { exchange, lengthFrame, rawConnect, splitLengthFrames, within } from '../helpers/wire.js';

// The reference vectors of shared/bench-protocol.md, through real sockets and worker threads.
const SPIDERMAN = 'i am spiderman.';
const D1 = 'd69fc959dd3e23abac25fc9a7fee91aef9fad24bfb162227654bca21764c5b7d';
const D2 = '3a1af3ef2fa6a9f573277feb8a61655ae5d31499d5e7bc80dfc59004082787ac';

describe.each([0, 2])('bench protocol reference vectors, workers: %i', (workers) => {
  let s: Running;
  beforeAll(async () => {
    s = await start({ handler: EXAMPLES.bench, workers });
  });
  afterAll(() => s.close());

  it('K=0 echoes, K=1 and K=2 hash', async () => {
    const c = await s.client();
    const [r0, r1, r2] = await Promise.all([
      c.request(benchBody(0, SPIDERMAN)),
      c.request(benchBody(1, SPIDERMAN)),
      c.request(benchBody(2, SPIDERMAN)),
    ]);
    expect(r0.toString()).toBe(SPIDERMAN);
    expect(r1.toString('hex')).toBe(D1);
    expect(r2.toString('hex')).toBe(D2);
  });
});

describe.each([0, 2])('bench protocol: a body (LEN) of exactly 1 MiB is accepted with the default options, workers: %i', (workers) => {
  it('LEN = 1 MiB is echoed whole; LEN = 1 MiB + 1 closes that connection only', async () => {
    const s = await start({ handler: EXAMPLES.bench, workers });
    try {
      const c = await s.client();
      const payload = Buffer.alloc(1024 * 1024 - 4, 7);
      payload.writeUInt32BE(0xdeadbeef, payload.length - 4);
      const body = benchBody(0, payload);
      expect(body.length).toBe(1024 * 1024);
      const r = await c.request(body);
      expect(r.equals(payload)).toBe(true);
      const peer = await rawConnect(s.port);
      const head = Buffer.alloc(4);
      head.writeUInt32BE(1024 * 1024 + 1);
      peer.socket.write(head);
      await within(peer.ended, 5000, "the server's FIN after the over-long frame");
      // The server goes on: the first client still gets answers.
      expect((await c.request(benchBody(0, 'still here'))).toString()).toBe('still here');
    } finally {
      await s.close();
    }
  });
});

// Echo replies view the request's own bytes; from 4 KiB on, the main thread writes them
// behind their header without a copy (src/dispatch/inline.ts). Requests written in pieces
// that cut frames anywhere, so frames come from whole chunks and from merged buffers.
describe.each([
  { workers: 0, offload: 'auto' },
  { workers: 2, offload: 'auto' },
] as const)('bench protocol: pipelined echoes of 1-20 KiB arrive whole and in order, workers: $workers', ({ workers, offload }) => {
  it('300 echoes in one stream written in uneven pieces', async () => {
    const s = await start({ handler: EXAMPLES.bench, workers, offload });
    try {
      const payloads = Array.from({ length: 300 }, (_, i) => {
        const p = Buffer.allocUnsafe(1000 + ((i * 4099) % 19_500));
        for (let j = 0; j < p.length; j++) p[j] = (i * 7 + j * 13) & 255;
        return p;
      });
      const wire = Buffer.concat(payloads.map((p) => lengthFrame(benchBody(0, p))));
      const pieces: Buffer[] = [];
      for (let at = 0, k = 0; at < wire.length; k++) {
        const n = [1, 7, 4096, 65_536, 333, 20_000][k % 6]!;
        pieces.push(wire.subarray(at, at + n));
        at += n;
      }
      const got = splitLengthFrames(await exchange(s.port, pieces));
      expect(got.length).toBe(payloads.length);
      expect(got.findIndex((g, i) => !g.equals(payloads[i]!))).toBe(-1);
    } finally {
      await s.close();
    }
  });
});
