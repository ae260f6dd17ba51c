import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { createServer, resolveOptions } from '../../dist/src/index.js';
import { isLoopback } from '../../dist/src/options.js';
import { startOptionsFromFlags } from '../../dist/src/cli/start.js';
import { EXAMPLES, ROOT } from '../helpers/server.js';
import { within } from '../helpers/wire.js';
import { adminPort, get } from './helpers.js';

// The admin server shows heap snapshots and profiles of the live process: it
// binds loopback unless the operator explicitly allows a public address.

const handler = EXAMPLES.echo;

describe('admin options', () => {
  it('off unless configured; defaults: 127.0.0.1, metrics on', () => {
    expect(resolveOptions({ handler }).admin).toBeNull();
    expect(resolveOptions({ handler, admin: null }).admin).toBeNull();
    expect(resolveOptions({ handler, admin: { port: 9090 } }).admin).toEqual({ port: 9090, host: '127.0.0.1', allowPublic: false, metrics: true });
  });

  it.each(['0.0.0.0', '::', '10.0.0.5', '192.168.1.2', 'example.com', '::ffff:10.0.0.1'])('refuses host %s without allowPublic', (host) => {
    expect(() => resolveOptions({ handler, admin: { port: 9090, host } })).toThrow(
      expect.objectContaining({ code: 'SHOAL_INVALID_OPTION', message: expect.stringContaining(`admin.host '${host}' is not a loopback address`) }),
    );
  });

  it('allowPublic: true lets a public host through', () => {
    expect(resolveOptions({ handler, admin: { port: 9090, host: '0.0.0.0', allowPublic: true } }).admin).toMatchObject({ host: '0.0.0.0', allowPublic: true });
  });

  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['localhost', true],
    ['::1', true],
    ['[::1]', true],
    ['0:0:0:0:0:0:0:1', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['128.0.0.1', false],
    ['localhost.example.com', false],
  ])('isLoopback(%s) = %s', (host, expected) => {
    expect(isLoopback(host)).toBe(expected);
  });

  it.each([
    [{ port: -1 }, 'admin.port must be an integer from 0 to 65535 (got -1)'],
    [{ port: 70000 }, 'admin.port must be an integer from 0 to 65535'],
    [{ port: '9090' }, 'admin.port must be an integer from 0 to 65535 (got "9090")'],
    [{}, 'admin.port must be an integer'],
    [{ port: 1, prot: 2 }, "unknown option 'admin.prot'"],
    [{ port: 1, allowPublic: 'yes' }, 'admin.allowPublic must be a boolean'],
    [{ port: 1, metrics: 1 }, 'admin.metrics must be a boolean'],
    [{ port: 1, host: '' }, 'admin.host must be a non-empty string'],
    [9090, 'admin must be an object like { port: 9090 } or null'],
  ])('rejects admin %j', (admin, message) => {
    expect(() => resolveOptions({ handler, admin: admin as never })).toThrow(expect.objectContaining({ code: 'SHOAL_INVALID_OPTION', message: expect.stringContaining(message) }));
  });

  it('binds where it is told: an explicit loopback host', async () => {
    const s = createServer({ handler, workers: 0, admin: { port: 0, host: 'localhost' } });
    await s.listen({ host: '127.0.0.1', port: 0 });
    try {
      expect(['127.0.0.1', '::1']).toContain(s.admin!.address()!.address);
      if (s.admin!.address()!.address === '127.0.0.1') expect((await get(adminPort(s), '/healthz')).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});

describe('CLI flags', () => {
  const base = { handler };
  it('--admin-port, --admin-host and --admin-allow-public map to admin', () => {
    expect(startOptionsFromFlags({ ...base }).options.admin).toBeUndefined();
    expect(startOptionsFromFlags({ ...base, 'admin-port': '9090' }).options.admin).toEqual({ port: 9090 });
    expect(startOptionsFromFlags({ ...base, 'admin-port': '9090', 'admin-host': '0.0.0.0', 'admin-allow-public': true }).options.admin).toEqual({
      port: 9090,
      host: '0.0.0.0',
      allowPublic: true,
    });
    expect(() => startOptionsFromFlags({ ...base, 'admin-host': '127.0.0.1' })).toThrow(/need --admin-port/);
    expect(() => startOptionsFromFlags({ ...base, 'admin-port': 'x' })).toThrow(/admin-port/);
  });

  it('shoal start --admin-host 0.0.0.0 without --admin-allow-public exits 2 with the reason', async () => {
    const child = spawn(process.execPath, [`${ROOT}dist/src/cli.js`, 'start', '--handler', handler, '--port', '0', '--admin-port', '0', '--admin-host', '0.0.0.0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const [code] = (await within(once(child, 'exit'), 20_000, 'shoal start exiting')) as [number];
    clearTimeout(timer);
    expect(code).toBe(2);
    expect(stderr).toContain("SHOAL_INVALID_OPTION: admin.host '0.0.0.0' is not a loopback address");
    expect(stderr).toContain('--admin-allow-public');
  });
});
