/**
 * The Node `cluster` baseline of the benchmark matrix: N processes, each running shoal
 * with `workers: 0` (handlers inline), all listening on one port (the primary accepts and
 * hands connections round-robin, Node's default on Linux).
 *
 *   node dist/bench/cluster-server.js --handler <module> [--processes N] [--host H] [--port P]
 *                                     [--max-connections N]
 *
 * Logs pino-style JSON lines on stdout like `shoal start`: `"msg":"listening"` with the
 * port once every process listens. SIGTERM/SIGINT: every process drains and exits (each
 * with its own deadline); the primary exits 0 when all have, or kills them after 15 s.
 */
import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { createServer, handleSignals } from '../src/index.js';

const log = (msg: string, fields: Record<string, unknown> = {}, level = 30): void => {
  process.stdout.write(JSON.stringify({ level, time: Date.now(), pid: process.pid, ...fields, msg }) + '\n');
};

const { values } = parseArgs({
  options: {
    handler: { type: 'string' },
    processes: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    'max-connections': { type: 'string' },
  },
  strict: true,
});
const host = values.host ?? '127.0.0.1';
const port = Number(values.port ?? 0);
const processes = Number(values.processes ?? availableParallelism());
const maxConnections = Number(values['max-connections'] ?? 10_000);
if (!values.handler) {
  process.stderr.write('cluster-server: --handler is required\n');
  process.exit(2);
}

if (cluster.isPrimary) {
  const workers: Worker[] = [];
  const ports = new Set<number>();
  let listening = 0;
  let stopping = false;
  for (let i = 0; i < processes; i++) {
    const w = cluster.fork();
    workers.push(w);
    w.on('message', (m: { type?: string; port?: number }) => {
      if (m.type !== 'listening') return;
      ports.add(m.port!);
      if (++listening === processes) {
        if (ports.size !== 1) log('processes listen on different ports', { ports: [...ports] }, 50);
        log('listening', { address: host, port: m.port, processes, workers: 0 });
      }
    });
    w.on('exit', (code, signal) => {
      if (!stopping) {
        log('cluster process died', { worker: w.process.pid, code, signal }, 50);
        stop(1);
      }
    });
  }
  const stop = (code: number): void => {
    if (stopping) return;
    stopping = true;
    log('recv quit signal: stopping every process');
    const alive = workers.filter((w) => w.process.exitCode === null && w.process.signalCode === null);
    let left = alive.length;
    const done = (): void => {
      log('all done');
      process.exit(code);
    };
    if (left === 0) done();
    for (const w of alive) {
      w.once('exit', () => {
        if (--left === 0) done();
      });
      w.process.kill('SIGTERM');
    }
    setTimeout(() => {
      for (const w of alive) w.process.kill('SIGKILL');
      log('deadline reached: killed the rest', {}, 40);
      process.exit(1);
    }, 15_000).unref();
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGQUIT'] as const) process.on(s, () => stop(0));
} else {
  const quiet = { debug() {}, info() {}, warn: (o: unknown, m?: string) => log(m ?? '', { detail: o }, 40), error: (o: unknown, m?: string) => log(m ?? '', { detail: o }, 50) };
  const server = createServer({ handler: values.handler, workers: 0, maxConnections, logger: quiet });
  handleSignals(server, quiet);
  const address = await server.listen({ host, port });
  process.send!({ type: 'listening', port: address.port });
}
