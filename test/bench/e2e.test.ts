import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../../dist/src/index.js';
import type { ShoalServer } from '../../dist/src/index.js';
import { runBench } from '../../dist/src/bench/run.js';
import { lengthFrame, splitLengthFrames } from '../helpers/wire.js';

// Real runs of the generator against a real shoal server in this process: counts and
// errors only, never speed.
const HANDLER = fileURLToPath(new URL('../../examples/bench-protocol/handler.js', import.meta.url));

describe('shoal bench against a live server', () => {
  let server: ShoalServer;
  let port: number;
  beforeAll(async () => {
    server = createServer({ handler: HANDLER, workers: 0, drainTimeout: 2000 });
    ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
  });
  afterAll(() => server.close());

  it('a 1 s closed-loop run: every request answered and verified, no errors', async () => {
    const r = await runBench({ port, connections: 4, pipelining: 8, duration: 1000, iterations: 3 });
    expect(r.errors).toMatchObject({ total: 0, mismatches: 0, timeouts: 0, resets: 0, connectErrors: 0, lost: 0 });
    expect(r.requests.total).toBeGreaterThan(0);
    expect(r.requests.answered).toBe(r.requests.sent);
    expect(r.requests.total).toBeLessThanOrEqual(r.requests.answered);
    expect(r.latency.count).toBe(r.requests.answered);
    expect(r.throughput.total).toBe(r.requests.total * (4 + 32));
    expect(r.generator.threads).toBe(1);
  });

  it('--amount: exactly that many requests, spread over the connections', async () => {
    const r = await runBench({ port, connections: 3, pipelining: 4, amount: 1000 });
    expect(r.errors.total).toBe(0);
    expect(r.requests).toMatchObject({ sent: 1000, answered: 1000, total: 1000 });
    expect(r.latency.count).toBe(1000);
  });

  it('open loop (-R): sends exactly the scheduled requests', async () => {
    const r = await runBench({ port, connections: 4, pipelining: 4, rate: 2000, duration: 1000 });
    expect(r.errors.total).toBe(0);
    expect(r.requests.sent).toBe(2000);
    expect(r.requests.answered).toBe(2000);
  });

  it('generator threads (-w 2): histograms and counters merged across threads', async () => {
    const r = await runBench({ port, connections: 4, pipelining: 4, duration: 1000, size: 1000, workers: 2 });
    expect(r.errors.total).toBe(0);
    expect(r.generator.threads).toBe(2);
    expect(r.generator.elu).toHaveLength(2);
    expect(r.requests.answered).toBe(r.requests.sent);
    expect(r.latency.count).toBe(r.requests.answered);
    expect(r.requests.total).toBeGreaterThan(0);
  });

  it('nothing listening: a clear error, no hang', async () => {
    const probe = createServer({ handler: HANDLER, workers: 0 });
    const { port: free } = await probe.listen({ host: '127.0.0.1', port: 0 });
    await probe.close();
    await expect(runBench({ port: free, connections: 2, duration: 1000 })).rejects.toThrow(/could not connect/);
  });
});

describe('shoal bench against a server that lies once', () => {
  it('a wrong reply followed by a reset counts one mismatch, also after the reconnect', async () => {
    // K = 0 (echo: the body after its 4-byte K). The first connection gets one corrupted
    // echo, then a reset; later connections are echoed faithfully.
    let accepted = 0;
    const liar = net.createServer((socket) => {
      const first = accepted++ === 0;
      let lied = false;
      let pending = Buffer.alloc(0);
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        const whole = pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0);
        if (!whole) return;
        const frames = splitLengthFrames(pending); // pipelining 1: one request at a time
        pending = Buffer.alloc(0);
        for (const frame of frames) {
          if (first) {
            if (lied) return; // nothing more on this connection: the reset is coming
            lied = true;
            const wrong = Buffer.from(frame.subarray(4));
            wrong[wrong.length - 1]! ^= 0xff;
            socket.write(lengthFrame(wrong));
            setTimeout(() => socket.resetAndDestroy(), 20);
            return;
          }
          socket.write(lengthFrame(frame.subarray(4))); // the bench protocol's echo: the payload
        }
      });
    });
    await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve));
    const { port } = liar.address() as net.AddressInfo;
    try {
      const r = await runBench({ port, connections: 1, pipelining: 1, amount: 50, iterations: 0, size: 16 });
      expect(accepted).toBeGreaterThanOrEqual(2);
      expect(r.errors.mismatches).toBe(1);
      expect(r.errors.resets).toBeGreaterThanOrEqual(1);
      expect(r.requests.answered).toBeGreaterThan(1);
    } finally {
      await new Promise<void>((resolve) => liar.close(() => resolve()));
    }
  });
});


describe('shoal bench --tls against a live TLS server', () => {
  const TLS = fileURLToPath(new URL('../fixtures/tls/', import.meta.url));
  let server: ShoalServer;
  let port: number;
  beforeAll(async () => {
    server = createServer({ handler: HANDLER, workers: 0, drainTimeout: 2000, tls: { cert: `${TLS}server.crt`, key: `${TLS}server.key` } });
    ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
  });
  afterAll(() => server.close());

  it('--ca verifies the server; every reply verified, also from generator threads', async () => {
    for (const workers of [0, 2]) {
      const r = await runBench({ port, connections: 4, pipelining: 8, amount: 2000, iterations: 1, workers, tls: { ca: `${TLS}ca.crt`, insecure: false } });
      expect(r.errors).toMatchObject({ total: 0, mismatches: 0, connectErrors: 0 });
      expect(r.requests).toMatchObject({ sent: 2000, answered: 2000 });
    }
    expect(server.stats().counters.tlsHandshakeFailures).toBe(0);
  });

  it('--insecure skips verification; without --ca or --insecure a test CA is refused', async () => {
    const ok = await runBench({ port, connections: 2, pipelining: 2, amount: 100, tls: { ca: null, insecure: true } });
    expect(ok.errors.total).toBe(0);
    await expect(runBench({ port, connections: 1, pipelining: 1, amount: 10, timeout: 2000, tls: { ca: null, insecure: false } })).rejects.toThrow(/could not connect/);
  });

  it('flags: --ca and --insecure need --tls and exclude each other', async () => {
    const { parseBenchArgs } = await import('../../dist/src/bench/options.js');
    expect(parseBenchArgs(['--tls', '--ca', 'x.pem', '8000'])).toMatchObject({ options: { tls: { ca: 'x.pem', insecure: false } } });
    expect(() => parseBenchArgs(['--insecure', '8000'])).toThrow(/need --tls/);
    expect(() => parseBenchArgs(['--tls', '--ca', 'x', '--insecure', '8000'])).toThrow(/exclude each other/);
  });
});
