import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watched } from '../../dist/src/cli/watch.js';
import { connect } from '../../dist/src/index.js';
import { killAll, run } from './run.js';

// `shoal start --watch` (issue 14): an edit reloads through the hot reload; the connection stays.

let dir = '';
afterEach(() => {
  killAll();
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});

const lib = (version: string): string => `export const VERSION: string = '${version}';\n`;
const handler = (suffix: string): string =>
  `import { VERSION } from './lib/version.js';\nexport default (text: string): string => VERSION + '${suffix}|' + text;\n`;

describe('shoal start --watch', () => {
  it('reloads when the handler or a module it imports changes; a broken edit keeps the running code and says why', async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-watch-'));
    mkdirSync(join(dir, 'lib'));
    mkdirSync(join(dir, 'node_modules'));
    writeFileSync(join(dir, 'lib', 'version.ts'), lib('v1'));
    writeFileSync(join(dir, 'handler.ts'), handler(''));
    const r = run(['start', '--watch', '--handler', join(dir, 'handler.ts'), '--codec', 'utf8', '--port', '0', '--workers', '2']);
    const port = (await r.waitForLog('listening', 20_000)).port as number;
    await r.waitForLog('watch: reloading the handler');
    const c = await connect({ port, timeout: 15_000 });
    let closed = false;
    c.socket.once('close', () => (closed = true));
    expect((await c.request('a')).toString()).toBe('v1|a');

    // A file the handler imports.
    writeFileSync(join(dir, 'lib', 'version.ts'), lib('v2'));
    await r.waitForLog('reloaded', 20_000, 1);
    expect((await c.request('b')).toString()).toBe('v2|b');

    // A broken handler: the running code serves on, and the log says why.
    writeFileSync(join(dir, 'handler.ts'), 'export default (text: string) => {\n');
    const failed = await r.waitForLog('reload failed', 20_000);
    expect(failed.code).toBe('SHOAL_HANDLER_LOAD_FAILED');
    expect(String(failed.err)).toContain('handler.ts');
    expect((await c.request('c')).toString()).toBe('v2|c');

    // Files under node_modules are not watched; fixing the handler reloads again.
    writeFileSync(join(dir, 'node_modules', 'x.js'), 'export {};\n');
    writeFileSync(join(dir, 'handler.ts'), handler('+'));
    await r.waitForLog('reloaded', 20_000, 2);
    expect((await c.request('d')).toString()).toBe('v2+|d');
    const changes = r.logs().filter((l) => l.msg === 'watch: files changed, reloading').flatMap((l) => l.changed as string[]);
    expect(changes.some((f) => f.includes('node_modules'))).toBe(false);

    expect(closed).toBe(false);
    expect(r.child.exitCode).toBeNull();
    c.close();
  });

  it('watches source files only, outside node_modules, dist and dot-directories', () => {
    for (const f of ['handler.ts', 'lib/version.js', 'a.mts', 'b.cjs', 'config.json']) expect(watched(f)).toBe(true);
    for (const f of ['node_modules/x/index.js', 'dist/handler.js', '.git/index.js', 'sub/node_modules/y.ts', 'notes.txt', 'handler.ts.swp', '.handler.ts.un~']) {
      expect(watched(f)).toBe(false);
    }
  });
});
