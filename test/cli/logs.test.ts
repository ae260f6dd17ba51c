import { afterEach, describe, expect, it } from 'vitest';
import { configForLog, effectiveLogFormat } from '../../dist/src/cli/logger.js';
import { EXAMPLES } from '../helpers/server.js';
import { within } from '../helpers/wire.js';
import { killAll, run } from './run.js';

// Readable logs (issue 14): human lines on a terminal or with --log-format pretty, JSON piped.

afterEach(killAll);

async function startAndStop(args: string[]): Promise<string> {
  const r = run(['start', '--handler', EXAMPLES.echo, '--host', '127.0.0.1', '--port', '0', '--workers', '1', ...args]);
  await r.waitForOutput(/listening/, 20_000);
  r.child.kill('SIGTERM');
  expect((await within(r.exited, 15_000, 'exit after SIGTERM')).code).toBe(0);
  return r.stdout();
}

describe('shoal start logs', () => {
  it('--log-format pretty prints short human lines, not JSON', async () => {
    const out = await startAndStop(['--log-format', 'pretty']);
    const lines = out.split('\n').filter((l) => l.length > 0);
    expect(lines.some((l) => /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: listening /.test(l))).toBe(true);
    expect(lines.some((l) => /INFO: recv quit signal/.test(l))).toBe(true);
    expect(lines.some((l) => /INFO: all done/.test(l))).toBe(true);
    expect(lines.filter((l) => l.startsWith('{'))).toEqual([]);
    expect(out).not.toContain('"level"');
    // The options dump is at debug level now.
    expect(out).not.toContain('maxPendingFrames');
  });

  it('piped, the default is JSON lines; the options dump only at debug, with nothing callable or secret', async () => {
    const out = await startAndStop([]);
    const lines = out.split('\n').filter((l) => l.length > 0);
    const records = lines.map((l) => JSON.parse(l) as { msg: string; level: number; config?: unknown });
    expect(records.map((r) => r.msg)).toContain('listening');
    expect(records.some((r) => r.config !== undefined)).toBe(false);

    const debug = (await startAndStop(['--log-level', 'debug'])).split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as { msg: string; level: number; config?: Record<string, unknown> });
    const dump = debug.find((r) => r.config !== undefined)!;
    expect(dump.level).toBe(20); // pino's debug
    expect(dump.config).toMatchObject({ workers: 1, maxPendingFrames: 65536, codec: 'raw' });
    expect(dump.config).not.toHaveProperty('logger');
  });

  it('auto picks pretty on a terminal and JSON otherwise', () => {
    expect(effectiveLogFormat('auto', true)).toBe('pretty');
    expect(effectiveLogFormat('auto', false)).toBe('json');
    expect(effectiveLogFormat('json', true)).toBe('json');
    expect(effectiveLogFormat('pretty', false)).toBe('pretty');
  });

  it('the options dump never shows key material', () => {
    const shown = configForLog({
      workers: 2,
      goAway: Buffer.from('BYE\n'),
      tls: { key: Buffer.from('-----BEGIN PRIVATE KEY-----'), cert: 'CERT', passphrase: 'hunter2', pfx: null },
      logger: { info() {} },
      onThing: () => {},
    });
    expect(shown).toEqual({ workers: 2, goAway: '4 bytes', tls: { key: '[redacted]', cert: 'CERT', passphrase: '[redacted]', pfx: null } });
    // A key given as a path is named (which file), and an object's own toJSON() is used.
    expect(configForLog({ tls: { key: '/etc/shoal/server.key', keyPem: '-----BEGIN PRIVATE KEY-----\nMII' } })).toEqual({
      tls: { key: '/etc/shoal/server.key', keyPem: '[redacted]' },
    });
    expect(configForLog({ tls: { toJSON: () => ({ cert: 'a.crt', key: '<120 bytes of PEM>' }) } })).toEqual({ tls: { cert: 'a.crt', key: '<120 bytes of PEM>' } });
    expect(JSON.stringify(shown)).not.toContain('PRIVATE');
    expect(JSON.stringify(shown)).not.toContain('hunter2');
  });
});
