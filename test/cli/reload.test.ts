import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { pipelinedLoad } from '../helpers/load.js';
import { killAll, run } from './run.js';

// SIGHUP under `shoal start`: the handler reloads under load; a broken file keeps the process serving.

const source = (version: string): string => `export default (frame) => Buffer.concat([Buffer.from('${version}|'), frame]);\n`;

let dir = '';
afterEach(() => {
  killAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});

describe('shoal start + SIGHUP', () => {
  it('reloads under pipelined load with no error and no closed connection; a broken file keeps the old code and the process', async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-hup-'));
    const file = join(dir, 'handler.js');
    writeFileSync(file, source('v1'));
    const r = run(['start', '--handler', file, '--host', '127.0.0.1', '--port', '0', '--workers', '2']);
    const port = (await r.waitForLog('listening', 20_000)).port as number;
    const load = await pipelinedLoad(port, 4, 8);
    await load.until((x) => x.startsWith('v1|'), 100, 'v1 replies');

    writeFileSync(file, source('v2'));
    r.child.kill('SIGHUP');
    await r.waitForLog('reloaded', 20_000);
    await load.until((x) => x.startsWith('v2|'), 100, 'v2 replies');

    writeFileSync(file, 'export default (frame) => {\n');
    r.child.kill('SIGHUP');
    const failed = await r.waitForLog('reload failed', 20_000);
    expect(failed.code).toBe('SHOAL_HANDLER_LOAD_FAILED');
    const seen = Math.max(...load.conns.map((c) => c.replies.length));
    await load.until((x) => x.startsWith('v2|'), seen, 'v2 replies after the failed reload');
    await load.stop();

    expect(r.child.exitCode).toBeNull();
    for (const [i, c] of load.conns.entries()) {
      expect(c.errors).toEqual([]);
      expect(c.closed).toBe(false);
      const versions = c.replies.map((x) => x.split('|')[0]);
      const first = versions.indexOf('v2');
      expect(versions.slice(0, first).every((v) => v === 'v1')).toBe(true);
      expect(versions.slice(first).every((v) => v === 'v2')).toBe(true);
      c.replies.forEach((x, k) => expect(x.slice(3)).toBe(`${i}:${k}`));
      c.client.close();
    }
  });
});
