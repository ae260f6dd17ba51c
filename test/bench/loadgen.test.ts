import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../../dist/src/index.js';
import type { ShoalServer } from '../../dist/src/index.js';
import { buildLoadgen, holdConnections, runLoadgen } from '../../dist/bench/loadgen.js';
import { lengthFrame, waitFor } from '../helpers/wire.js';

// The native generator (bench/loadgen/loadgen.c), built with the system C compiler, against
// a real shoal server with a real worker: counts and errors only, never speed. A machine
// without `cc` fails here, with buildLoadgen's message saying so.
const HANDLER = fileURLToPath(new URL('../../examples/bench-protocol/handler.js', import.meta.url));

describe('loadgen against a live shoal server (workers: 1)', () => {
  let server: ShoalServer;
  let port: number;
  beforeAll(async () => {
    buildLoadgen();
    server = createServer({ handler: HANDLER, workers: 1, drainTimeout: 2000 });
    ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
  }, 120_000);
  afterAll(() => server.close());

  it('1 s closed loop, K > 0: every reply verified against the SHA-256 chain, no errors', async () => {
    const { result, code, stderr } = await runLoadgen({ port, connections: 4, pipeline: 4, durationS: 1, k: 50, size: 100 });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(result!.errors).toEqual({ total: 0, mismatches: 0, timeouts: 0, resets: 0, connectErrors: 0, lost: 0 });
    expect(result!.requests.total).toBeGreaterThan(0);
    expect(result!.requests.answered).toBe(result!.requests.sent);
    expect(result!.latency.count).toBe(result!.requests.total);
    expect(result!.latency.p50).toBeLessThanOrEqual(result!.latency.p99);
    expect(result!.latency.p99).toBeLessThanOrEqual(result!.latency.max);
    expect(result!.cpu.threads).toHaveLength(1);
  });

  it('open loop, echo, 2 threads: exactly the scheduled requests, all answered', async () => {
    const { result, code } = await runLoadgen({ port, connections: 4, pipeline: 8, threads: 2, durationS: 1, rate: 2000, size: 1000, k: 0 });
    expect(code).toBe(0);
    expect(result!.errors.total).toBe(0);
    expect(result!.requests.sent).toBe(2000);
    expect(result!.requests.answered).toBe(2000);
    expect(result!.cpu.threads).toHaveLength(2);
  });

  it('--hold: connections used once each and held until released', async () => {
    const held = await holdConnections(port, 50);
    try {
      expect(held.result).toMatchObject({ opened: 50, failed: 0, mismatches: 0 });
      await waitFor(() => server.stats().connections.active === 50, '50 held connections on the server');
    } finally {
      await held.release();
    }
  });
});

describe('building loadgen', () => {
  it('compiles with the system C compiler; without one it fails saying so', () => {
    const dir = mkdtempSync(join(tmpdir(), 'loadgen-build-'));
    try {
      const bin = buildLoadgen({ bin: join(dir, 'loadgen'), force: true });
      expect(execFileSync(bin, ['--help'], { encoding: 'utf8' })).toMatch(/^Usage: loadgen/);
      expect(() => buildLoadgen({ cc: 'no-such-cc-here', bin: join(dir, 'other'), force: true })).toThrow(/C compiler "no-such-cc-here" is not installed/);
      expect(existsSync(join(dir, 'other'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe('loadgen against a server that lies', () => {
  it('a corrupted reply counts as a mismatch and fails the run', async () => {
    // Echoes the bench protocol (K = 0) faithfully except every 10th reply, one byte flipped.
    let replies = 0;
    const liar = net.createServer((socket) => {
      let pending = Buffer.alloc(0);
      socket.on('error', () => {});
      socket.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
          const end = 4 + pending.readUInt32BE(0);
          const body = Buffer.from(pending.subarray(8, end)); // the payload after K
          pending = pending.subarray(end);
          if (++replies % 10 === 0) body[0]! ^= 0xff;
          socket.write(lengthFrame(body));
        }
      });
    });
    await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve));
    const { port } = liar.address() as net.AddressInfo;
    try {
      const { result, code } = await runLoadgen({ port, connections: 2, pipeline: 2, durationS: 0.5, size: 16, k: 0 });
      expect(code).toBe(1);
      expect(result!.errors.mismatches).toBeGreaterThan(0);
      expect(result!.errors.mismatches).toBe(Math.floor(replies / 10));
      expect(result!.errors.total).toBe(result!.errors.mismatches);
      expect(result!.requests.answered).toBe(replies);
    } finally {
      await new Promise<void>((resolve) => liar.close(() => resolve()));
    }
  });
});
