#!/usr/bin/env node
// The package as users get it (issue 14): pack the repository, install the tarball into an
// empty directory, and there run what a new user runs — `npx shoal start` against a shipped
// example and against a TypeScript handler (without tsx: the error says what to install;
// with it: replies, a .ts stack line, --watch), the library and client imports, and
// `shoal bench` briefly. Run by .ci/run after npm test: `node test/pack/smoke.mjs`.
// Only loopback traffic; every wait is bounded; every process it starts it stops by PID.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const WAIT_MS = 30_000;
const work = mkdtempSync(join(tmpdir(), 'shoal-pack-'));
const app = join(work, 'app');
const started = [];

function step(what) {
  process.stdout.write(`pack smoke: ${what}\n`);
}

function fail(message) {
  throw new Error(`pack smoke: ${message}`);
}

function sh(cmd, args, cwd) {
  return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 5 * 60_000 });
}

/** Start `npx shoal ...` in the app; resolves once its JSON log says `listening`. */
function startShoal(args) {
  const child = spawn('npx', ['--no-install', 'shoal', ...args, '--log-format', 'json', '--host', '127.0.0.1', '--port', '0'], {
    cwd: app,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  const proc = { child, out: '', err: '', waiters: [] };
  child.stdout.on('data', (c) => {
    proc.out += c;
    for (const w of proc.waiters.splice(0)) w();
  });
  child.stderr.on('data', (c) => (proc.err += c));
  proc.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  proc.logs = () =>
    proc.out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
  proc.waitForLog = (msg, nth = 1) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no '${msg}' log line within ${WAIT_MS} ms; stderr: ${proc.err}`)), WAIT_MS);
      const check = () => {
        const hit = proc.logs().filter((l) => l.msg === msg)[nth - 1];
        if (hit) {
          clearTimeout(timer);
          return resolve(hit);
        }
        if (child.exitCode !== null) {
          clearTimeout(timer);
          return reject(new Error(`shoal exited (${child.exitCode}) before '${msg}'; stderr: ${proc.err}`));
        }
        proc.waiters.push(check);
      };
      child.once('exit', () => setImmediate(check));
      check();
    });
  return proc;
}

/** SIGTERM to the server itself (its pid from the `listening` log line: npx is its parent), then npx exits with its status. */
async function stop(proc) {
  const { pid } = await proc.waitForLog('listening');
  process.kill(pid, 'SIGTERM');
  const code = await Promise.race([proc.exited, new Promise((r) => setTimeout(() => r('timeout'), WAIT_MS))]);
  if (code !== 0) fail(`shoal did not exit 0 after SIGTERM (got ${code}); stderr: ${proc.err}`);
  await proc.waitForLog('all done');
}

/** Run the app's client.mjs: one request per argument over one connection, replies printed one per line. */
function request(port, framing, ...bodies) {
  return sh('node', ['client.mjs', String(port), framing, ...bodies], app).trim().split('\n');
}

function expectEqual(actual, expected, what) {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) fail(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

async function main() {
  step('npm pack');
  const packed = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', work], ROOT).replace(/^[^[]*/s, ''));
  const files = packed[0].files.map((f) => f.path);
  const shipped = files.filter((f) => /^(test|bench|docs|docs-tool|src|workers)\//.test(f) || /\.test\.|bench\/results/.test(f));
  if (shipped.length > 0) fail(`the tarball ships what users do not need: ${shipped.slice(0, 5).join(', ')}`);
  for (const need of ['dist/src/cli.js', 'dist/src/index.d.ts', 'dist/workers/worker.js', 'examples/echo/handler.js']) {
    if (!files.includes(need)) fail(`the tarball lacks ${need}`);
  }
  const tarball = join(work, packed[0].filename);

  step('install the tarball into an empty project');
  sh('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'smoke-app', version: '1.0.0', private: true }, null, 2));
  sh('npm', ['install', '--no-audit', '--no-fund', tarball], app);
  writeFileSync(
    join(app, 'client.mjs'),
    `import { connect } from 'shoal/client';
import { createServer, ShoalError } from 'shoal';
if (typeof createServer !== 'function' || typeof ShoalError !== 'function') throw new Error('the library import is incomplete');
const [port, framing, ...bodies] = process.argv.slice(2);
const client = await connect({ host: '127.0.0.1', port: Number(port), timeout: 10000, ...(framing === 'line' ? { framing: { type: 'line' } } : {}) });
for (const b of bodies) console.log((await client.request(b)).toString());
client.close();
`,
  );

  step('npx shoal start with a shipped example (echo), the client and library imports');
  const echo = startShoal(['start', '--handler', 'node_modules/shoal/examples/echo/handler.js', '--workers', '2']);
  const echoPort = (await echo.waitForLog('listening')).port;
  expectEqual(request(echoPort, 'length', 'hello', 'shoal'), ['hello', 'shoal'], 'echo replies');
  await stop(echo);

  step('npx shoal bench, briefly, against the bench-protocol example');
  const bench = startShoal(['start', '--handler', 'node_modules/shoal/examples/bench-protocol/handler.js', '--workers', '2']);
  const benchPort = (await bench.waitForLog('listening')).port;
  const report = sh('npx', ['--no-install', 'shoal', 'bench', `127.0.0.1:${benchPort}`, '-c', '2', '-p', '4', '-d', '1s', '-k', '1'], app);
  if (!/req\/s|requests/i.test(report)) fail(`shoal bench printed no report: ${report}`);
  await stop(bench);

  writeFileSync(
    join(app, 'handler.ts'),
    `import type { HandlerContext } from 'shoal';
import { greet } from './greet.js';

export default function handler(text: string, ctx: HandlerContext): string {
  if (text === 'throw') throw new Error('thrown in handler.ts'); // line 5
  return greet(text, ctx.sequence);
}
`,
  );
  const greet = (word) => `export function greet(name: string, seq: number): string {\n  return '${word} ' + name + ' #' + seq;\n}\n`;
  writeFileSync(join(app, 'greet.ts'), greet('hello'));
  const tsArgs = ['start', '--handler', 'handler.ts', '--framing', 'line', '--codec', 'utf8', '--on-handler-error', 'error-frame', '--workers', '2'];

  step('a TypeScript handler without tsx: exits 1 saying npm install tsx');
  const noTsx = startShoal(tsArgs);
  const code = await Promise.race([noTsx.exited, new Promise((r) => setTimeout(() => r('timeout'), WAIT_MS))]);
  if (code !== 1 || !noTsx.err.includes('SHOAL_HANDLER_LOAD_FAILED') || !noTsx.err.includes('npm install tsx')) {
    fail(`without tsx: expected exit 1 with SHOAL_HANDLER_LOAD_FAILED and 'npm install tsx', got ${code}: ${noTsx.err}`);
  }

  step('npm install tsx; the TypeScript handler answers, its stack names the .ts line, --watch picks up an edit');
  sh('npm', ['install', '--no-audit', '--no-fund', 'tsx'], app);
  const ts = startShoal([...tsArgs, '--watch']);
  const tsPort = (await ts.waitForLog('listening')).port;
  await ts.waitForLog('watch: reloading the handler when files under its directory change');
  expectEqual(request(tsPort, 'line', 'ada', 'throw'), ['hello ada #0', '{"error":{"code":"SHOAL_HANDLER_ERROR","message":"thrown in handler.ts"}}'], 'TypeScript replies');
  const logged = await ts.waitForLog('handler error');
  if (!/handler\.ts:5:\d+/.test(String(logged.stack))) fail(`the handler error's stack does not name handler.ts:5: ${logged.stack}`);
  writeFileSync(join(app, 'greet.ts'), greet('welcome'));
  await ts.waitForLog('reloaded');
  expectEqual(request(tsPort, 'line', 'bob'), ['welcome bob #0'], 'reply after the watched edit');
  await stop(ts);
  step('ok');
}

try {
  await main();
} finally {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
}

