import { afterEach, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { run } from './run.js';
import type { Run } from './run.js';
import { within } from '../helpers/wire.js';

// examples/resp started exactly as its README says (plus a free loopback port): the codec
// and the keyed affinity come from the module, the workers are the default.
let r: Run | null = null;
afterEach(async () => {
  if (r !== null && r.child.exitCode === null) {
    r.child.kill('SIGTERM');
    await within(r.exited, 15_000, 'shoal exiting');
  }
  r = null;
});

describe('shoal start --framing resp --handler examples/resp/handler.js', () => {
  it('serves Redis clients with one keyspace across the workers', async () => {
    r = run(['start', '--framing', 'resp', '--handler', 'examples/resp/handler.js', '--host', '127.0.0.1', '--port', '0']);
    const port = (await r.waitForLog('listening')).port as number;
    const clients = [0, 1, 2, 3].map(() => new Redis({ port, host: '127.0.0.1', retryStrategy: () => null, maxRetriesPerRequest: 0 }));
    try {
      // Each connection writes its own key; every connection reads all of them back.
      await Promise.all(clients.map((c, i) => c.set(`k${i}`, `v${i}`)));
      for (const c of clients) expect(await c.mget('k0', 'k1', 'k2', 'k3')).toEqual(['v0', 'v1', 'v2', 'v3']);
      await Promise.all(clients.map((c) => Promise.all(Array.from({ length: 100 }, () => c.incr('n')))));
      expect(await clients[3]!.get('n')).toBe('400');
      expect(await clients[0]!.call('hashchain', '2', 'i am spiderman.')).toBe('3a1af3ef2fa6a9f573277feb8a61655ae5d31499d5e7bc80dfc59004082787ac');
    } finally {
      for (const c of clients) c.disconnect();
    }
  });

  it('--framing resp takes no other framing flags', async () => {
    r = run(['start', '--framing', 'resp', '--eol', 'crlf', '--handler', 'examples/resp/handler.js']);
    const { code } = await within(r.exited, 15_000, 'shoal refusing the flags');
    expect(code).toBe(2);
    expect(r.stderr()).toMatch(/--eol applies to --framing line only/);
  });
});
