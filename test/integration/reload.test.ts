import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, reloadAll } from '../../dist/src/index.js';
import type { ServerOptions } from '../../dist/src/index.js';
import { adminPort, get, sample, scrape } from '../admin/helpers.js';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { pipelinedLoad } from '../helpers/load.js';
import type { LoadConnection } from '../helpers/load.js';
import { settle } from '../helpers/wire.js';

// Hot reload (issue 12): server.reload() under continuous pipelined load, real workers.

/** A handler that answers `<version>:<request>` and notes its teardown() in `dir`. */
function handlerSource(version: string, dir: string): string {
  return `import { writeFileSync } from 'node:fs';
import { threadId } from 'node:worker_threads';
// ~50 us of work per message: frames wait in the dispatcher's queue, as under real load.
export default (frame) => {
  const end = process.hrtime.bigint() + 50000n;
  while (process.hrtime.bigint() < end);
  return Buffer.concat([Buffer.from('${version}|'), frame]);
};
export function teardown() {
  writeFileSync(${JSON.stringify(dir)} + '/teardown-${version}-' + threadId, '');
}
`;
}

/** Every reply answers its request, in order, and the version switches from v1 to v2 exactly once. */
function expectOneSwitch(conn: LoadConnection, index: number): void {
  expect(conn.errors).toEqual([]);
  expect(conn.closed).toBe(false);
  const versions = conn.replies.map((r) => r.split('|')[0]);
  const firstNew = versions.indexOf('v2');
  expect(firstNew).toBeGreaterThan(0);
  expect(versions.slice(0, firstNew).every((v) => v === 'v1')).toBe(true);
  expect(versions.slice(firstNew).every((v) => v === 'v2')).toBe(true);
  // No reply lost or reordered: reply i answers request i of this connection.
  conn.replies.forEach((r, i) => expect(r.slice(3)).toBe(`${index}:${i}`));
}

let dir = '';
let running: Running | null = null;

afterEach(async () => {
  await running?.close();
  running = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = '';
});

async function startWith(workers: number, extra: Partial<ServerOptions> = {}): Promise<{ file: string }> {
  dir = mkdtempSync(join(tmpdir(), 'shoal-reload-'));
  const file = join(dir, 'handler.js');
  writeFileSync(file, handlerSource('v1', dir));
  // Every message to the pool: many of the pipelined frames wait in its queue at the switch.
  running = await start({ handler: file, workers, offload: 'always', ...extra });
  return { file };
}

describe('server.reload()', () => {
  for (const workers of [2, 0]) {
    it(`switches every connection to the new code exactly once under pipelined load (workers: ${workers})`, async () => {
      const { file } = await startWith(workers);
      const server = running!.server;
      const load = await pipelinedLoad(running!.port, 8, 16);
      await load.until((r) => r.startsWith('v1|'), 200, 'v1 replies on every connection');
      writeFileSync(file, handlerSource('v2', dir));
      const reloaded = new Promise((r) => server.once('reload', r));
      const report = await server.reload();
      await reloaded;
      expect(report.generation).toBe(1);
      expect(report.drained).toBe(true);
      await load.until((r) => r.startsWith('v2|'), 200, 'v2 replies on every connection');
      await load.stop();
      load.conns.forEach(expectOneSwitch);
      const stats = server.stats();
      expect(stats.counters.reloads).toBe(1);
      expect(stats.counters.handlerErrors).toBe(0);
      expect(stats.connections.active).toBe(8);
      // The old generation ran teardown() (in each of its workers) before reload() resolved.
      const torn = readdirSync(dir).filter((f) => f.startsWith('teardown-v1-'));
      expect(torn.length).toBe(Math.max(1, workers));
    });
  }

  it('a handler that fails to load keeps the old code serving; reload() rejects with SHOAL_HANDLER_LOAD_FAILED', async () => {
    const { file } = await startWith(2);
    const server = running!.server;
    const load = await pipelinedLoad(running!.port, 2, 4);
    await load.until((r) => r.startsWith('v1|'), 50, 'v1 replies');
    writeFileSync(file, 'export default (frame) => {\n'); // a syntax error
    const failed = await settle(server.reload());
    expect(failed.ok).toBe(false);
    expect(!failed.ok && failed.error.code).toBe('SHOAL_HANDLER_LOAD_FAILED');
    const before = load.conns.map((c) => c.replies.length);
    await load.until((r) => r.startsWith('v1|'), Math.max(...before) + 100, 'v1 replies after the failed reload');
    // A good file loads again: the failure left nothing behind.
    writeFileSync(file, handlerSource('v2', dir));
    await server.reload();
    await load.until((r) => r.startsWith('v2|'), 50, 'v2 replies');
    await load.stop();
    load.conns.forEach(expectOneSwitch);
    expect(server.stats().counters).toMatchObject({ reloads: 1, reloadFailures: 1 });
  });

  it('the admin endpoint and the metrics follow the new pool', async () => {
    const { file } = await startWith(2, { admin: { port: 0 } });
    const server = running!.server;
    const port = adminPort(server);
    const threads = async (): Promise<number[]> =>
      (JSON.parse((await get(port, '/debug/stats')).body) as { pool: { threads: { threadId: number }[] } }).pool.threads.map((t) => t.threadId);
    const before = await threads();
    expect(before.length).toBe(2);
    const client = await running!.client();
    await client.request('a');
    writeFileSync(file, handlerSource('v2', dir));
    await server.reload();
    expect((await client.request('b')).toString()).toBe('v2|b');
    const after = await threads();
    expect(after.length).toBe(2);
    expect(after.filter((id) => before.includes(id))).toEqual([]);
    const m = await scrape(port);
    expect(sample(m, 'shoal_reloads_total', { result: 'ok' })).toBe(1);
    expect(sample(m, 'shoal_reloads_total', { result: 'failed' })).toBe(0);
    expect(sample(m, 'shoal_pool_threads')).toBe(2);
    expect((await get(port, '/healthz')).status).toBe(200);
    // A worker of the new pool can be profiled (the control path reaches the new pool).
    const profile = await get(port, `/debug/profile?seconds=0.1&thread=${after[0]}`);
    expect(profile.status).toBe(200);
  });

  // Inline, the main thread re-imports the handler module itself: through tsx's import()
  // (an ES module package) or its require() (a CommonJS one), each must evaluate it again.
  for (const type of ['module', 'commonjs']) {
    it(`a TypeScript handler reloads inline (workers: 0, "type": "${type}")`, async () => {
      dir = mkdtempSync(join(tmpdir(), 'shoal-reload-ts-'));
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ type }));
      const file = join(dir, 'handler.ts');
      const ts = (v: string): string => `export default (frame: Buffer): string => '${v}|' + frame.toString();\n`;
      writeFileSync(file, ts('v1'));
      running = await start({ handler: file, workers: 0 });
      const client = await running.client();
      expect((await client.request('a')).toString()).toBe('v1|a');
      writeFileSync(file, ts('v2'));
      await running.server.reload();
      expect((await client.request('b')).toString()).toBe('v2|b');
      writeFileSync(file, ts('v3'));
      await running.server.reload();
      expect((await client.request('c')).toString()).toBe('v3|c');
    });
  }

  it("reloadAll (SIGHUP's work) reloads the TLS certificate and the handler; a handler that fails still lets TLS reload", async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-reload-all-'));
    const file = join(dir, 'handler.js');
    writeFileSync(file, handlerSource('v1', dir));
    running = await start({ handler: file, workers: 1, tls: { cert: `${FIXTURES}tls/server.crt`, key: `${FIXTURES}tls/server.key` } });
    const server = running.server;
    const events: string[] = [];
    server.on('tlsReload', () => events.push('tls'));
    server.on('reload', () => events.push('handler'));
    writeFileSync(file, handlerSource('v2', dir));
    await reloadAll(server);
    expect(events).toEqual(['tls', 'handler']);
    writeFileSync(file, 'export default (frame) => {\n');
    const failed = await settle(reloadAll(server));
    expect(!failed.ok && failed.error.code).toBe('SHOAL_HANDLER_LOAD_FAILED');
    expect(events).toEqual(['tls', 'handler', 'tls']);
    expect(server.stats().counters).toMatchObject({ reloads: 1, reloadFailures: 1 });
  });

  it('serializes concurrent calls: each one switches a generation', async () => {
    const { file } = await startWith(1);
    const server = running!.server;
    writeFileSync(file, handlerSource('v2', dir));
    const reports = await Promise.all([server.reload(), server.reload(), server.reload()]);
    expect(reports.map((r) => r.generation)).toEqual([1, 2, 3]);
    const client = await running!.client();
    expect((await client.request('x')).toString()).toBe('v2|x');
    expect(server.stats().counters.reloads).toBe(3);
  });

  it('rejects before listen and after close', async () => {
    const { file } = await startWith(0);
    const unstarted = createServer({ handler: file, workers: 0 });
    const before = await settle(unstarted.reload());
    expect(!before.ok && before.error.code).toBe('SHOAL_SERVER_CLOSED');
    await unstarted.close();
    const server = running!.server;
    await running!.close();
    const after = await settle(server.reload());
    expect(!after.ok && after.error.code).toBe('SHOAL_SERVER_CLOSED');
  });
});
