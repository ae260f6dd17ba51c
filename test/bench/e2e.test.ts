import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../../dist/src/index.js';
import type { ShoalServer } from '../../dist/src/index.js';
import { runBench } from '../../dist/src/bench/run.js';

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
