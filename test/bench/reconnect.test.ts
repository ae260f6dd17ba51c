import { createServer as netServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createServer } from '../../dist/src/index.js';
import { parseBenchArgs } from '../../dist/src/bench/options.js';
import { runBench } from '../../dist/src/bench/run.js';
import { renderResult } from '../../dist/src/bench/report.js';

// `shoal bench --reconnect` against a server that keeps closing its connections in order
// (maxConnectionAge, no going-away frame): counts only, never speed.
const HANDLER = fileURLToPath(new URL('../../examples/bench-protocol/handler.js', import.meta.url));

async function ageingServer() {
  const server = createServer({ handler: HANDLER, workers: 0, maxConnectionAge: 250, drainTimeout: 2000 });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, port };
}

describe('shoal bench --reconnect', () => {
  it('re-sends what the server left unanswered at each FIN: every request answered once, every reply verified, no errors', async () => {
    const { server, port } = await ageingServer();
    try {
      const r = await runBench({ port, connections: 4, pipelining: 4, duration: 1500, iterations: 2, reconnect: true });
      expect(r.requests.orderlyCloses).toBeGreaterThan(0);
      expect(r.errors).toMatchObject({ total: 0, mismatches: 0, timeouts: 0, resets: 0, lost: 0 });
      expect(r.requests.answered).toBe(r.requests.sent);
      expect(r.latency.count).toBe(r.requests.answered);
      await server.close();
      // The server processed exactly what the bench got back: nothing re-sent was run twice.
      const s = server.stats().counters;
      expect(s.framesIn).toBe(r.requests.answered);
      expect(s.repliesOut).toBe(r.requests.answered);
      expect(renderResult(r)).toMatch(/requests re-sent after \d+ orderly closes/);
    } finally {
      await server.close();
    }
  });

  it('without it the same closes are counted as resets', async () => {
    const { server, port } = await ageingServer();
    try {
      const r = await runBench({ port, connections: 4, pipelining: 4, duration: 1500, iterations: 2 });
      expect(r.errors.resets).toBeGreaterThan(0);
      expect(r.requests.orderlyCloses).toBe(0);
      expect(r.requests.resent).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('a reset right behind replies, which reaches it as an end of stream, is still a reset: nothing re-sent', async () => {
    // Echoes the first bench frame of each connection once the second has come, then resets
    // in the same tick: the RST lands behind a reply the bench has not read yet (read as an
    // end, not ECONNRESET). Open loop, so the reply does not make the bench write (a write
    // would fail with ECONNRESET first).
    const raw = netServer((s) => {
      s.on('error', () => {});
      let pending = Buffer.alloc(0);
      const frames: Buffer[] = [];
      s.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
          frames.push(pending.subarray(0, 4 + pending.readUInt32BE(0)));
          pending = pending.subarray(4 + pending.readUInt32BE(0));
        }
        if (frames.length < 2) return;
        const f = frames[0]!; // [u32 length][u32 K = 0][payload]: the reply is [u32 length][payload]
        const reply = Buffer.alloc(f.length - 4);
        reply.writeUInt32BE(f.length - 8, 0);
        f.copy(reply, 4, 8);
        s.write(reply);
        s.resetAndDestroy();
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    try {
      const port = (raw.address() as AddressInfo).port;
      const r = await runBench({ port, connections: 2, pipelining: 4, rate: 400, duration: 800, reconnect: true });
      expect(r.errors).toMatchObject({ mismatches: 0 });
      expect(r.errors.resets).toBeGreaterThan(0);
      expect(r.requests.orderlyCloses).toBe(0);
      expect(r.requests.resent).toBe(0);
    } finally {
      raw.close();
    }
  });

  it('is a flag', () => {
    const parsed = parseBenchArgs(['--reconnect', '8000']);
    expect(parsed.help === false && parsed.options.reconnect).toBe(true);
  });
});
