import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { connect } from '../../dist/src/index.js';
import type { Client } from '../../dist/src/index.js';
import { CLI, freePort, shoalLogs, startProgram, startShoal, stopAll } from './helpers.js';
import type { Proc } from './helpers.js';

// Zero-loss rolling restarts behind real HAProxy 2.6 (mode tcp): two `shoal start`
// instances on loopback, HAProxy health-checking each one's admin /readyz. Each instance
// is restarted in turn (SIGTERM with a lame duck longer than HAProxy needs to see
// /readyz fail, then a new process on the same ports) under 32 connections x 4
// pipelined requests, every reply verified. The figures go to stdout for the report.

const dir = mkdtempSync(join(tmpdir(), 'shoal-rolling-'));
afterEach(stopAll);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CONNECTIONS = 32;
const DEPTH = 4;
const INTER_MS = 200; // HAProxy check interval
const FALL = 2; // failed checks before a server is DOWN
const LAME_DUCK = '1500ms'; // > INTER_MS x FALL, with room for a slow check
const HANDLER = 'examples/bench-protocol/handler.js';

type Name = 'a' | 'b';

/** GET on an admin port: status and body (bounded). */
function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Poll `cond` (at most `ms`): the state of outside programs has no event to wait on. */
async function until(cond: () => Promise<boolean> | boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

class Cluster {
  front = 0;
  ports = { a: { port: 0, admin: 0 }, b: { port: 0, admin: 0 } };
  shoal: Record<Name, Proc | null> = { a: null, b: null };
  /** framesIn / repliesOut of every instance that has exited (from its 'closed' log line). */
  finished: { framesIn: number; repliesOut: number }[] = [];
  haproxy: Proc | null = null;
  sock = join(dir, `haproxy-${Math.random().toString(36).slice(2)}.sock`);

  constructor(readonly shoalArgs: string[]) {}

  async start(): Promise<void> {
    this.front = await freePort();
    for (const n of ['a', 'b'] as const) this.ports[n] = { port: await freePort(), admin: await freePort() };
    await Promise.all((['a', 'b'] as const).map((n) => this.startInstance(n)));
    const cfg = join(dir, `haproxy-${this.front}.cfg`);
    writeFileSync(
      cfg,
      [
        'global',
        `  stats socket ${this.sock} mode 600 level admin`,
        'defaults',
        '  mode tcp',
        '  timeout connect 2s',
        '  timeout client 60s',
        '  timeout server 60s',
        '  retries 3',
        '  option redispatch',
        'frontend fe',
        `  bind 127.0.0.1:${this.front}`,
        '  default_backend shoal',
        'backend shoal',
        '  balance roundrobin',
        '  option httpchk GET /readyz',
        `  default-server inter ${INTER_MS}ms fall ${FALL} rise 2`,
        `  server a 127.0.0.1:${this.ports.a.port} check port ${this.ports.a.admin}`,
        `  server b 127.0.0.1:${this.ports.b.port} check port ${this.ports.b.admin}`,
        '',
      ].join('\n'),
    );
    this.haproxy = startProgram('haproxy', ['-f', cfg, '-db']);
    let seen = '';
    await until(async () => {
      seen = `${await this.serverStatus('a')}/${await this.serverStatus('b')}`;
      return seen === 'UP/UP';
    }, 'HAProxy to see both instances UP').catch((err: Error) => {
      throw new Error(`${err.message} (last seen: ${seen}; haproxy said: ${this.haproxy?.stderr()}${this.haproxy?.stdout()})`);
    });
  }

  async startInstance(n: Name): Promise<void> {
    const { port, admin } = this.ports[n];
    this.shoal[n] = await startShoal([
      '--handler', HANDLER, '--workers', '1', '--port', String(port), '--admin-port', String(admin),
      '--lame-duck', LAME_DUCK, '--drain-timeout', '20s', ...this.shoalArgs,
    ]);
  }

  /** SIGTERM one instance (lame duck, drain, exit), start its replacement, wait until HAProxy has it UP. */
  async restart(n: Name): Promise<void> {
    const old = this.shoal[n]!;
    const exit = await old.stop('SIGTERM', 30_000);
    expect(exit.code, `instance ${n} exit code`).toBe(0);
    this.collect(old);
    await this.startInstance(n);
    await until(async () => (await this.serverStatus(n)) === 'UP', `HAProxy to see the new ${n} UP`);
  }

  async rolling(): Promise<void> {
    await this.restart('a');
    await this.restart('b');
  }

  collect(p: Proc): void {
    const closed = shoalLogs(p).find((l) => l.msg === 'closed');
    expect(closed, 'the closed log line').toBeDefined();
    this.finished.push({ framesIn: closed!.framesIn as number, repliesOut: closed!.repliesOut as number });
  }

  /** Stop both instances; every frame any instance ever read, and every reply it sent. */
  async stop(): Promise<{ framesIn: number; repliesOut: number }> {
    for (const n of ['a', 'b'] as const) {
      const p = this.shoal[n];
      if (!p) continue;
      expect((await p.stop('SIGTERM', 30_000)).code).toBe(0);
      this.collect(p);
      this.shoal[n] = null;
    }
    await this.haproxy?.stop('SIGTERM');
    return this.finished.reduce((t, f) => ({ framesIn: t.framesIn + f.framesIn, repliesOut: t.repliesOut + f.repliesOut }), { framesIn: 0, repliesOut: 0 });
  }

  /** HAProxy's view of one server (UP, DOWN, ...), from its stats socket. */
  serverStatus(n: Name): Promise<string> {
    return new Promise((resolve) => {
      const s = netConnect(this.sock);
      let out = '';
      s.on('data', (c: Buffer) => (out += c.toString()));
      s.on('error', () => resolve('NO SOCKET'));
      s.on('close', () => {
        const line = out.split('\n').find((l) => l.startsWith(`shoal,${n},`));
        resolve(line?.split(',')[17] ?? 'UNKNOWN');
      });
      s.end('show stat\n');
    });
  }

  async connectionsOn(n: Name): Promise<number> {
    const r = await httpGet(this.ports[n].admin, '/debug/stats');
    return (JSON.parse(r.body) as { connections: { count: number } }).connections.count;
  }
}

const bodyOf = (payload: string): Buffer => Buffer.concat([Buffer.alloc(4), Buffer.from(payload)]); // bench protocol K = 0: echo

interface LoadResult {
  sent: number;
  answered: number;
  failed: number;
  wrong: number;
  resent: number;
  reconnects: number;
  codes: Record<string, number>;
}

/**
 * 32 connections x 4 pipelined requests through HAProxy, closed loop, each reply checked
 * against its own request. With reconnect the shoal client survives the restarts; without,
 * a connection that closes fails what it had pending and a new one is opened.
 */
function load(front: number, reconnect: boolean): { stop(): Promise<LoadResult>; progress(): number } {
  const r: LoadResult = { sent: 0, answered: 0, failed: 0, wrong: 0, resent: 0, reconnects: 0, codes: {} };
  let stopping = false;
  const clients: Client[] = [];
  const open = () => connect({ port: front, timeout: 30_000, reconnect, reconnectTimeout: 30_000 });
  const conn = async (ci: number): Promise<void> => {
    let client: Client | null = null;
    let opening: Promise<Client> | null = null;
    const get = (): Promise<Client> => {
      if (client) return Promise.resolve(client);
      opening ??= open().then((c) => {
        clients.push(c);
        client = c;
        opening = null;
        return c;
      });
      return opening;
    };
    const lane = async (li: number): Promise<void> => {
      for (let i = 0; !stopping; i++) {
        const c = await get();
        const payload = `c${ci}-l${li}-${i}`;
        r.sent++;
        try {
          const reply = await c.request(bodyOf(payload));
          if (reply.toString() === payload) r.answered++;
          else r.wrong++;
        } catch (err) {
          r.failed++;
          const code = (err as { code?: string }).code ?? 'ERROR';
          r.codes[code] = (r.codes[code] ?? 0) + 1;
          if (client === c) client = null; // the naive client: this connection is gone
        }
      }
    };
    await Promise.all(Array.from({ length: DEPTH }, (_, li) => lane(li)));
  };
  const all = Promise.all(Array.from({ length: CONNECTIONS }, (_, ci) => conn(ci)));
  return {
    progress: () => r.answered,
    async stop() {
      stopping = true;
      await all;
      for (const c of clients) {
        r.resent += c.stats.resent;
        r.reconnects += c.stats.reconnects;
        c.close();
      }
      return r;
    },
  };
}

const figures: string[] = [];
afterAll(() => {
  if (figures.length > 0) process.stdout.write(`\n[rolling restart figures]\n${figures.join('\n')}\n`);
});

describe('rolling restart of two shoal instances behind real HAProxy, 32 connections x 4 pipelined', () => {
  it('the shoal client (reconnect on): 0 requests lost, every reply verified', async () => {
    const cluster = new Cluster([]);
    await cluster.start();
    const l = load(cluster.front, true);
    await until(() => l.progress() >= 2000, 'load flowing');
    await cluster.rolling();
    const before = l.progress();
    await until(() => l.progress() >= before + 2000, 'load flowing after the restart');
    const r = await l.stop();
    const server = await cluster.stop();
    figures.push(`shoal client, reconnect on: sent ${r.sent}, answered ${r.answered}, lost ${r.failed}, re-sent ${r.resent}, reconnects ${r.reconnects}`);
    expect(r.codes).toEqual({});
    expect(r.failed).toBe(0);
    expect(r.wrong).toBe(0);
    expect(r.answered).toBe(r.sent);
    expect(r.reconnects).toBeGreaterThanOrEqual(CONNECTIONS); // every connection moved at least once
    // Retry-safe: each request was run exactly once, over all four processes.
    expect(server.framesIn).toBe(r.answered);
    expect(server.repliesOut).toBe(r.answered);
  });

  it('a client without retry loses only what no server ever read', async () => {
    const cluster = new Cluster([]);
    await cluster.start();
    const l = load(cluster.front, false);
    await until(() => l.progress() >= 2000, 'load flowing');
    await cluster.rolling();
    const before = l.progress();
    await until(() => l.progress() >= before + 2000, 'load flowing after the restart');
    const r = await l.stop();
    const server = await cluster.stop();
    figures.push(`naive client (no retry): sent ${r.sent}, answered ${r.answered}, lost ${r.failed} [${JSON.stringify(r.codes)}]`);
    expect(r.wrong).toBe(0);
    expect(Object.keys(r.codes).filter((c) => c !== 'SHOAL_CONNECTION_CLOSED')).toEqual([]);
    // Every request some instance read was answered and arrived; the lost ones were never read.
    expect(server.framesIn).toBe(r.answered);
    expect(server.repliesOut).toBe(r.answered);
    expect(r.failed).toBe(r.sent - server.framesIn);
  });

  it('shoal bench --reconnect: 0 lost, re-sent requests counted, every reply verified', async () => {
    const cluster = new Cluster([]);
    await cluster.start();
    const bench = startProgram(process.execPath, [CLI, 'bench', '--reconnect', '-c', String(CONNECTIONS), '-p', String(DEPTH), '-d', '20', '-j', '-n', `127.0.0.1:${cluster.front}`]);
    await until(async () => (await cluster.connectionsOn('a')) + (await cluster.connectionsOn('b')) >= CONNECTIONS, 'the bench connected');
    await cluster.rolling();
    const stillRunning = bench.child.exitCode === null;
    const exit = await bench.exited;
    const report = JSON.parse(bench.stdout()) as {
      requests: { sent: number; answered: number; resent: number; orderlyCloses: number };
      errors: { total: number; lost: number; resets: number; mismatches: number; timeouts: number };
    };
    const server = await cluster.stop();
    figures.push(`shoal bench --reconnect: sent ${report.requests.sent}, answered ${report.requests.answered}, re-sent ${report.requests.resent} after ${report.requests.orderlyCloses} orderly closes, errors ${report.errors.total}, lost ${report.errors.lost}`);
    expect(stillRunning, 'the rolling restart ended while the bench was still running').toBe(true);
    expect(exit.code).toBe(0);
    expect(report.errors).toMatchObject({ total: 0, lost: 0, resets: 0, mismatches: 0, timeouts: 0 });
    expect(report.requests.answered).toBe(report.requests.sent);
    expect(report.requests.orderlyCloses).toBeGreaterThanOrEqual(CONNECTIONS);
    expect(server.framesIn).toBe(report.requests.answered);
  });

  it('after a deploy with --max-connection-age, connections are spread over both instances again', async () => {
    const cluster = new Cluster(['--max-connection-age', '3s', '--max-connection-age-grace', '10s']);
    await cluster.start();
    const l = load(cluster.front, true);
    await until(() => l.progress() >= 2000, 'load flowing');
    await cluster.rolling();
    // Right after the deploy: B was restarted last, so its old connections all went to A.
    const after = { a: await cluster.connectionsOn('a'), b: await cluster.connectionsOn('b') };
    // Within a few max ages (3 s +-10%), the balancer has spread them again.
    let spread = after;
    await until(async () => {
      spread = { a: await cluster.connectionsOn('a'), b: await cluster.connectionsOn('b') };
      return spread.a >= CONNECTIONS / 4 && spread.b >= CONNECTIONS / 4;
    }, 'connections on both instances', 30_000);
    const r = await l.stop();
    await cluster.stop();
    figures.push(`connection spread (a/b): right after the deploy ${after.a}/${after.b}; after max age ${spread.a}/${spread.b}`);
    expect(r.failed).toBe(0);
    expect(r.wrong).toBe(0);
  });
});

