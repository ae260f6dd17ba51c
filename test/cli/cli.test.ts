import { once } from 'node:events';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { killAll, run } from './run.js';
import { connect } from '../../dist/src/index.js';
import { EXAMPLES, ROOT, benchBody } from '../helpers/server.js';
import { rawConnect, shaChain, within } from '../helpers/wire.js';
import { get } from '../admin/helpers.js';

const httpStatus = async (port: number, path: string): Promise<number> => (await get(port, path)).status;

// `shoal` as a user runs it: a real process, real signals.

afterEach(killAll);

describe('shoal CLI', () => {
  it('--help exits 0 and prints the usage; so does start --help', async () => {
    const top = run(['--help']);
    expect((await within(top.exited, 10_000, 'shoal --help')).code).toBe(0);
    expect(top.stdout()).toMatch(/Usage: shoal/);
    expect(top.stdout()).toMatch(/\bstart\b/);

    const start = run(['start', '--help']);
    expect((await within(start.exited, 10_000, 'shoal start --help')).code).toBe(0);
    for (const flag of ['--handler', '--host', '--port', '--workers', '--framing', '--max-frame', '--codec', '--drain-timeout']) {
      expect(start.stdout()).toContain(flag);
    }
    expect(start.stderr()).toBe('');
  });

  it('an unknown flag exits 2 with a did-you-mean hint', async () => {
    const r = run(['start', '--handler', EXAMPLES.echo, '--prot', '0']);
    expect((await within(r.exited, 10_000, 'exit on a bad flag')).code).toBe(2);
    expect(r.stderr()).toContain('--prot');
    expect(r.stderr()).toMatch(/did you mean '--port'\?/);
    expect(r.logs().some((l) => l.msg === 'listening')).toBe(false);
  });

  it('a missing handler module exits non-zero before listening, with SHOAL_HANDLER_LOAD_FAILED on stderr', async () => {
    // Hold the port it is told to use: if it tried to listen first it would fail with EADDRINUSE instead.
    const holder = createNetServer();
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const port = (holder.address() as AddressInfo).port;
    try {
      const r = run(['start', '--handler', `${ROOT}test/fixtures/no-such-handler.js`, '--host', '127.0.0.1', '--port', String(port), '--workers', '2']);
      const { code } = await within(r.exited, 20_000, 'exit on a missing handler');
      expect(code).toBe(1); // README: a handler that cannot load exits 1 before listening
      expect(r.stderr()).toContain('SHOAL_HANDLER_LOAD_FAILED');
      expect(r.stderr()).toContain('no-such-handler.js');
      expect(r.stderr()).not.toContain('EADDRINUSE');
      expect(r.logs().some((l) => l.msg === 'listening')).toBe(false);
    } finally {
      holder.close();
    }
  });

  it.each(['SIGTERM', 'SIGINT', 'SIGQUIT'] as const)('start --port 0 answers a request; %s drains, logs recv quit signal and all done, exits 0', async (sig) => {
    const r = run(['start', '--handler', EXAMPLES.bench, '--host', '127.0.0.1', '--port', '0', '--workers', '2']);
    const listening = await r.waitForLog('listening');
    const port = listening.port as number;
    expect(port).toBeGreaterThan(0);
    const c = await connect({ port, timeout: 10_000 });
    const [echo, hash] = await Promise.all([c.request(benchBody(0, 'cli')), c.request(benchBody(3, 'cli'))]);
    expect(echo.toString()).toBe('cli');
    expect(hash.equals(shaChain(Buffer.from('cli'), 3))).toBe(true);

    // The client stays connected: the drain must end it (FIN), not wait for it.
    const fin = new Promise<void>((resolve) => c.socket.once('end', () => resolve()));
    r.child.kill(sig);
    const { code, signal } = await within(r.exited, 15_000, `exit after ${sig}`);
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    await within(fin, 1000, 'FIN to the connected client');
    const msgs = r.logs().map((l) => l.msg ?? '');
    const quit = msgs.findIndex((m) => m.includes('recv quit signal'));
    const done = msgs.findIndex((m) => m.includes('all done'));
    expect(quit).toBeGreaterThanOrEqual(0);
    expect(done).toBeGreaterThan(quit);
    expect(r.logs().find((l) => l.msg?.includes('recv quit signal'))!.signal).toBe(sig);
    c.close();
  });

  it('a second signal during the drain exits at once, non-zero', async () => {
    // A going-away frame keeps the drain open until the peer leaves; this peer never does.
    const r = run([
      'start', '--handler', EXAMPLES.echo, '--host', '127.0.0.1', '--port', '0', '--workers', '2',
      '--go-away', 'BYE\\n', '--framing', 'line', '--drain-timeout', '60s',
    ]);
    const port = (await r.waitForLog('listening')).port as number;
    const peer = await rawConnect(port);
    peer.socket.write('hello\n');
    await within(
      new Promise<void>((resolve) => {
        const check = () => (peer.received().toString() === 'hello\n' ? resolve() : setTimeout(check, 10));
        check();
      }),
      5000,
      'the echo',
    );
    r.child.kill('SIGTERM');
    await r.waitForLog('recv quit signal');
    // The drain is under way: the peer got the going-away bytes and is still being served.
    await within(
      new Promise<void>((resolve) => {
        const check = () => (peer.received().toString().includes('BYE\n') ? resolve() : setTimeout(check, 10));
        check();
      }),
      5000,
      'the going-away bytes',
    );
    expect(r.child.exitCode).toBeNull();
    r.child.kill('SIGTERM');
    const { code, signal } = await within(r.exited, 5000, 'exit after the second signal');
    expect({ code, signal }).toEqual({ code: 1, signal: null }); // README: a second signal exits at once with status 1
    peer.socket.destroy();
  });

  it('issue-11: with a client holding its connection (one raw message, then silence for 10 s), the process exits once shutdown is done', async () => {
    // The seed's client.go: write, read the echo, hold the connection open without reading or closing.
    const r = run(['start', '--handler', EXAMPLES.echo, '--framing', 'raw', '--host', '127.0.0.1', '--port', '0', '--workers', '2']);
    const port = (await r.waitForLog('listening')).port as number;
    const holder = await rawConnect(port);
    holder.socket.write('i am spiderman.');
    await within(new Promise((resolve) => holder.socket.once('data', resolve)), 10_000, 'the echo');
    holder.socket.pause(); // reads nothing more, sends no FIN
    r.child.kill('SIGINT');
    // Well before the holder would let go (10 s): the lingering close (2 s) ends the connection, then exit.
    const { code } = await within(r.exited, 8000, 'exit while the client still holds its connection');
    expect(code).toBe(0);
    expect(r.logs().some((l) => l.msg === 'all done')).toBe(true);
    expect(holder.socket.destroyed).toBe(false); // the client never let go
    holder.socket.destroy();
  });

  it('--lame-duck: /readyz answers 503 at once while new connections are still served, and a second signal exits at once', async () => {
    const r = run(['start', '--handler', EXAMPLES.echo, '--host', '127.0.0.1', '--port', '0', '--workers', '0', '--admin-port', '0', '--lame-duck', '60s']);
    await r.waitForOutput(/"msg":"listening"/);
    const port = r.logs().find((l) => l.msg === 'listening')!.port as number;
    const admin = (await r.waitForLog('admin server listening')).port as number;
    r.child.kill('SIGTERM');
    await r.waitForLog('lame duck');
    const ready = await httpStatus(admin, '/readyz');
    expect(ready).toBe(503);
    const c = await connect({ port, timeout: 10_000 });
    expect((await c.request(Buffer.from('still here'))).toString()).toBe('still here');
    c.close();
    // A second signal ends it at once (exit 1): the lame duck is a wait like any other.
    r.child.kill('SIGTERM');
    expect((await within(r.exited, 10_000, 'exit on the second signal')).code).toBe(1);
  });
});
