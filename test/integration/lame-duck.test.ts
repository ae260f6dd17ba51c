import { once } from 'node:events';
import { connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connect } from '../../dist/src/index.js';
import { EXAMPLES, start } from '../helpers/server.js';
import { within } from '../helpers/wire.js';
import { adminPort, get } from '../admin/helpers.js';

/** Resolves with the connect error code, or 'connected'. */
function tryConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

describe('lame duck (lameDuck)', () => {
  it('readiness turns false at once, the listener keeps accepting and serving for the lame duck, then the drain refuses', async () => {
    const s = await start({ handler: EXAMPLES.echo, workers: 2, lameDuck: 60_000, admin: { port: 0 } });
    const admin = adminPort(s.server);
    const before = await s.client();
    expect((await get(admin, '/readyz')).status).toBe(200);
    const events: string[] = [];
    s.server.on('closing', () => events.push('closing'));
    s.server.on('draining', () => events.push('draining'));
    const closed = s.server.close();
    expect(s.server.ready).toBe(false);
    expect(s.server.state).toBe('lameDuck');
    const ready = await get(admin, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toContain('lameDuck');
    // A balancer that has not noticed yet still gets served: on an old connection and on a new one.
    expect((await before.request('old')).toString()).toBe('old');
    const late = await connect({ port: s.port, timeout: 10_000 });
    expect((await late.request('new')).toString()).toBe('new');
    expect(s.server.connections.size).toBe(2);
    expect(events).toEqual(['closing']);
    // destroy() cuts the lame duck short (as a second signal would).
    const drained = once(s.server, 'draining');
    void s.server.destroy();
    await within(drained, 5000, "'draining' after destroy()");
    expect(await tryConnect(s.port)).toBe('ECONNREFUSED');
    await within(closed, 10_000, 'close()');
    expect(events).toEqual(['closing', 'draining']);
    late.close();
    before.close();
  });

  it('at the end of the lame duck the listener closes by itself and the connections drain (FIN)', async () => {
    const s = await start({ handler: EXAMPLES.echo, workers: 0, lameDuck: 300 });
    const c = await s.client();
    const fin = new Promise<void>((r) => c.socket.once('end', () => r()));
    const draining = once(s.server, 'draining');
    const closed = s.server.close();
    await within(draining, 10_000, "'draining' after the lame duck");
    expect(await tryConnect(s.port)).toBe('ECONNREFUSED');
    await within(fin, 10_000, 'FIN to the connected client');
    expect(await within(closed, 10_000, 'close()')).toEqual({ connections: 1, drained: 1, destroyed: 0 });
    c.close();
  });

  it('is validated and has a flag', async () => {
    const { resolveOptions } = await import('../../dist/src/options.js');
    const { startOptionsFromFlags } = await import('../../dist/src/cli/start.js');
    expect(resolveOptions({ handler: '/tmp/h.js' }).lameDuck).toBe(0);
    expect(() => resolveOptions({ handler: '/tmp/h.js', lameDuck: -1 })).toThrow(/lameDuck must be an integer >= 0/);
    expect(resolveOptions(startOptionsFromFlags({ handler: '/tmp/h.js', 'lame-duck': '5s' }).options).lameDuck).toBe(5000);
  });
});
