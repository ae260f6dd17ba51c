import { describe, expect, it } from 'vitest';
import { connect, createServer } from '../../dist/src/index.js';
import { EXAMPLES } from '../helpers/server.js';
import { waitFor, within } from '../helpers/wire.js';
import { ADMIN_FIXTURES, adminPort, captureLogger, get } from './helpers.js';
import type { Line } from './helpers.js';

// Liveness and readiness: what a load balancer or Kubernetes asks.

describe('/readyz and /healthz', () => {
  it('readyz is 200 while listening and 503 from the moment close() begins; healthz stays 200 during the drain', async () => {
    const lines: Line[] = [];
    // A going-away frame keeps the drain open until the client leaves: the window to probe in.
    const server = createServer({
      handler: EXAMPLES.echo,
      workers: 1,
      admin: { port: 0 },
      goAway: Buffer.from([0, 0, 0, 3, 98, 121, 101]), // a length-framed "bye"
      drainTimeout: 10_000,
      logger: captureLogger(lines),
    });
    const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
    const admin = adminPort(server);
    const ready = await get(admin, '/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toBe('ready\n');
    expect((await get(admin, '/healthz')).status).toBe(200);
    expect((await get(admin, '/readyz', 'HEAD')).status).toBe(200);

    const c = await connect({ port, timeout: 10_000 });
    expect((await c.request('hi')).toString()).toBe('hi');
    const closing = server.close();
    // No await between close() and the probe's answer being computed: readiness is already false.
    expect(server.ready).toBe(false);
    const during = await get(admin, '/readyz');
    expect(during.status).toBe(503);
    expect(during.body).toBe('not ready: server is closing\n');
    expect((await get(admin, '/readyz', 'HEAD')).status).toBe(503);
    const health = await get(admin, '/healthz');
    expect(health.status).toBe(200); // alive, workers up: only readiness changes
    const m = await get(admin, '/metrics');
    expect(m.body).toMatch(/^shoal_ready 0$/m);
    // The client got the going-away frame, leaves; the drain ends; the admin server goes down with the server.
    await waitFor(() => c.unsolicited.length === 1, 'the going-away frame');
    c.close();
    await within(closing, 10_000, 'close()');
    await expect(get(admin, '/readyz')).rejects.toThrow(/ECONNREFUSED/);
    // Shutdown phases, each logged once.
    const phases = lines.filter((l) => typeof l.msg === 'string' && (l.msg.startsWith('shutdown:') || l.msg === 'closed')).map((l) => l.msg);
    expect(phases).toEqual([
      'shutdown: stop accepting, draining connections',
      'shutdown: connections closed',
      'shutdown: running teardown, stopping workers',
      'closed',
    ]);
  });

  it('while workers warm up the admin server already answers: readyz and healthz 503 "starting"', async () => {
    process.env.SLOW_SETUP_MS = '1500';
    const server = createServer({ handler: `${ADMIN_FIXTURES}slow-setup.js`, workers: 1, admin: { port: 0 } });
    const listening = server.listen({ host: '127.0.0.1', port: 0 });
    try {
      const admin = await waitFor(() => server.admin?.address()?.port, 'the admin server listening');
      expect(server.state).toBe('starting');
      const r = await get(admin, '/readyz');
      expect(r.status).toBe(503);
      expect(r.body).toBe('not ready: server is starting\n');
      const h = await get(admin, '/healthz');
      expect(h.status).toBe(503);
      expect(h.body).toContain('starting');
      await within(listening, 10_000, 'listen()');
      expect((await get(admin, '/readyz')).status).toBe(200);
      expect((await get(admin, '/healthz')).status).toBe(200);
    } finally {
      await listening.catch(() => {});
      await server.close();
    }
  });

  it('healthz is 200 with workers: 0 (handlers inline)', async () => {
    const server = createServer({ handler: EXAMPLES.echo, workers: 0, admin: { port: 0 } });
    await server.listen({ host: '127.0.0.1', port: 0 });
    try {
      const h = await get(adminPort(server), '/healthz');
      expect(h).toMatchObject({ status: 200, body: 'ok\n' });
    } finally {
      await server.close();
    }
  });

  it('a taken admin port fails listen() with the error, and leaves nothing running', async () => {
    const first = createServer({ handler: EXAMPLES.echo, workers: 1, admin: { port: 0 } });
    await first.listen({ host: '127.0.0.1', port: 0 });
    try {
      const second = createServer({ handler: EXAMPLES.echo, workers: 1, admin: { port: adminPort(first) } });
      await expect(second.listen({ host: '127.0.0.1', port: 0 })).rejects.toThrow(/EADDRINUSE/);
      expect(second.state).toBe('closed');
    } finally {
      await first.close();
    }
  });
});
