import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '../../dist/src/index.js';
import { FIXTURES, ROOT } from '../helpers/server.js';
import { within } from '../helpers/wire.js';
import { killAll, run } from './run.js';

// `shoal start --handler x.ts` as a user runs it (issue 14).

const HANDLER = `${FIXTURES}typescript/handler.ts`;

afterEach(killAll);

describe('shoal start with a TypeScript handler', () => {
  it.each(['2', '0'])("answers, and a thrown error's logged stack names the .ts line (--workers %s)", async (workers) => {
    const r = run(['start', '--handler', HANDLER, '--codec', 'utf8', '--on-handler-error', 'error-frame', '--port', '0', '--workers', workers]);
    const port = (await r.waitForLog('listening', 20_000)).port as number;
    const c = await connect({ port, timeout: 10_000 });
    try {
      expect((await c.request('echo:x')).toString()).toBe('ts:echo:x:0');
      expect(JSON.parse((await c.request('throw:y')).toString())).toEqual({ error: { code: 'SHOAL_HANDLER_ERROR', message: 'thrown from handler.ts: y' } });
      const logged = await r.waitForLog('handler error');
      expect(logged.stack).toMatch(/handler\.ts:17:\d+/);
    } finally {
      c.close();
    }
  });

  it("in a CommonJS package (no \"type\": \"module\"), a thrown error's logged stack names the .ts line too", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'shoal-cjs-ts-'));
    try {
      cpSync(`${FIXTURES}typescript/handler.ts`, join(dir, 'handler.ts'));
      cpSync(`${FIXTURES}typescript/describe.ts`, join(dir, 'describe.ts'));
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'cjs-app', type: 'commonjs' }));
      const r = run(['start', '--handler', join(dir, 'handler.ts'), '--codec', 'utf8', '--on-handler-error', 'error-frame', '--port', '0', '--workers', '1']);
      const port = (await r.waitForLog('listening', 20_000)).port as number;
      const c = await connect({ port, timeout: 10_000 });
      try {
        expect((await c.request('echo:x')).toString()).toBe('ts:echo:x:0');
        await c.request('throw:y');
        expect((await r.waitForLog('handler error')).stack).toMatch(/handler\.ts:17:\d+/);
      } finally {
        c.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('without tsx installed, exits 1 before listening with SHOAL_HANDLER_LOAD_FAILED saying npm install tsx', async () => {
    // A copy of the built package whose node_modules has every dependency but tsx.
    const dir = mkdtempSync(join(tmpdir(), 'shoal-no-tsx-'));
    try {
      cpSync(join(ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
      cpSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
      mkdirSync(join(dir, 'node_modules'));
      for (const name of readdirSync(join(ROOT, 'node_modules'))) {
        if (name !== 'tsx' && !name.startsWith('.')) symlinkSync(join(ROOT, 'node_modules', name), join(dir, 'node_modules', name));
      }
      for (const workers of ['0', '1']) {
        const r = run(['start', '--handler', HANDLER, '--port', '0', '--workers', workers], { cli: join(dir, 'dist/src/cli.js') });
        const { code } = await within(r.exited, 20_000, 'exit without tsx');
        expect(code).toBe(1);
        expect(r.stderr()).toContain('SHOAL_HANDLER_LOAD_FAILED');
        expect(r.stderr()).toContain('npm install tsx');
        expect(r.logs().some((l) => l.msg === 'listening')).toBe(false);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
