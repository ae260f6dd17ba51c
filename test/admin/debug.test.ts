import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, createServer } from '../../dist/src/index.js';
import type { Client, ShoalServer } from '../../dist/src/index.js';
import { EXAMPLES, benchBody } from '../helpers/server.js';
import { adminPort, get, heapHeader } from './helpers.js';

// The pprof analogue: /debug/stats, live CPU profiles and heap snapshots of the
// main thread and of one worker, and the admin server's answers to bad requests.

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string } }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

let server: ShoalServer;
let port: number;
let admin: number;
let workerIds: number[];

beforeAll(async () => {
  server = createServer({ handler: EXAMPLES.bench, workers: 2, admin: { port: 0 }, drainTimeout: 3000 });
  ({ port } = await server.listen({ host: '127.0.0.1', port: 0 }));
  admin = adminPort(server);
  const stats = JSON.parse((await get(admin, '/debug/stats')).body) as { pool: { threads: { threadId: number }[] } };
  workerIds = stats.pool.threads.map((t) => t.threadId);
});

afterAll(async () => {
  await server?.close();
});

/** Keep the workers busy (bench-protocol K = 200: ~0.2 ms of SHA-256 per message) until stop(). */
async function load(): Promise<{ stop: () => Promise<number> }> {
  const clients: Client[] = [];
  for (let i = 0; i < 4; i++) clients.push(await connect({ port, timeout: 20_000 }));
  let running = true;
  let done = 0;
  const loops = clients.map(async (c) => {
    while (running) {
      await Promise.all(Array.from({ length: 8 }, () => c.request(benchBody(200, 'profile me'))));
      done += 8;
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      for (const c of clients) c.close();
      return done;
    },
  };
}

function parseProfile(body: string): CpuProfile {
  const p = JSON.parse(body) as CpuProfile;
  expect(Array.isArray(p.nodes)).toBe(true);
  expect(p.nodes.length).toBeGreaterThan(0);
  expect(p.samples.length).toBeGreaterThan(0);
  expect(p.timeDeltas).toHaveLength(p.samples.length);
  expect(p.endTime).toBeGreaterThan(p.startTime);
  return p;
}

const functions = (p: CpuProfile): Set<string> => new Set(p.nodes.map((n) => n.callFrame.functionName));

describe('/debug/stats', () => {
  it('is a JSON snapshot of connections, pool (thread ids), budgets, counters and uptime', async () => {
    const c = await connect({ port, timeout: 20_000 });
    try {
      await c.request(benchBody(0, 'x'));
      const r = await get(admin, '/debug/stats');
      expect(r.status, r.body).toBe(200);
      expect(r.headers['content-type']).toBe('application/json');
      const s = JSON.parse(r.body);
      expect(s).toMatchObject({
        state: 'listening',
        ready: true,
        uptime: { process: expect.any(Number), server: expect.any(Number) },
        connections: { count: 1, paused: 0, queuedBytes: 0, inFlight: 0 },
        pool: { workers: 2, queue: { frames: 0, bytes: 0, tasks: 0 }, restarts: { handler_timeout: 0, exit: 0 } },
        budgetHits: {},
        counters: { connectionsAccepted: expect.any(Number), framesIn: expect.any(Number) },
      });
      expect(s.pool.threads).toHaveLength(2);
      for (const t of s.pool.threads) {
        expect(t.threadId).toBeGreaterThan(0);
        expect(t.eventLoopUtilization).toBeGreaterThanOrEqual(0);
      }
      expect(s.uptime.server).toBeGreaterThan(0);
    } finally {
      c.close();
    }
  });
});

describe('/debug/profile', () => {
  it('thread=main: a .cpuprofile with samples, taken under load', async () => {
    const l = await load();
    let r;
    try {
      r = await get(admin, '/debug/profile?seconds=1&thread=main');
    } finally {
      expect(await l.stop()).toBeGreaterThan(0);
    }
    expect(r.status, r.body).toBe(200);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers['content-disposition']).toMatch(/attachment; filename="shoal-main-.*\.cpuprofile"/);
    const p = parseProfile(r.body);
    expect((p.endTime - p.startTime) / 1e6).toBeGreaterThanOrEqual(0.9); // µs -> s
  });

  it('thread=<workerId>: the worker\'s own profile, with the handler\'s SHA-256 in it', async () => {
    const l = await load();
    let r;
    try {
      r = await get(admin, `/debug/profile?seconds=1&thread=${workerIds[0]}`);
    } finally {
      await l.stop();
    }
    expect(r.status, r.body).toBe(200);
    expect(r.headers['content-disposition']).toMatch(new RegExp(`shoal-worker-${workerIds[0]}-.*\\.cpuprofile`));
    const p = parseProfile(r.body);
    // The worker runs the handler; the main thread does not.
    expect(p.nodes.some((n) => n.callFrame.url.includes('bench-protocol'))).toBe(true);
    expect(functions(p).has('serve')).toBe(true);
  });

  it('an idle worker (blocked in Atomics.wait between tasks) can be profiled too', async () => {
    const r = await get(admin, `/debug/profile?seconds=0.5&thread=${workerIds[1]}`);
    expect(r.status, r.body).toBe(200);
    parseProfile(r.body);
  });

  it('a second profile of the same thread while one runs is 409; another thread is fine', async () => {
    const first = get(admin, '/debug/profile?seconds=1&thread=main');
    await new Promise((r) => setTimeout(r, 200));
    const second = await get(admin, '/debug/profile?seconds=1&thread=main');
    expect(second.status).toBe(409);
    expect(second.body).toContain('already running');
    const other = await get(admin, `/debug/profile?seconds=0.3&thread=${workerIds[0]}`);
    expect(other.status).toBe(200);
    expect((await first).status).toBe(200);
  });
});

describe('/debug/heap', () => {
  it('thread=main: streams a snapshot whose header parses', async () => {
    const { status, header, bytesRead } = await heapHeader(admin, '/debug/heap?thread=main');
    expect(status).toBe(200);
    expect(header.snapshot.meta.node_fields).toContain('self_size');
    expect(header.snapshot.node_count).toBeGreaterThan(1000);
    expect(bytesRead).toBeLessThan(1024 * 1024); // we hung up after the header: the rest was never needed
  });

  it('thread=<workerId>: the worker\'s heap, under load, and the server still serves afterwards', async () => {
    const l = await load();
    try {
      const { status, header } = await heapHeader(admin, `/debug/heap?thread=${workerIds[1]}`);
      expect(status).toBe(200);
      expect(header.snapshot.meta.edge_fields).toContain('to_node');
      expect(header.snapshot.node_count).toBeGreaterThan(1000);
    } finally {
      await l.stop();
    }
    // Both heap snapshots were cut short by the client: the process lives on, the pool is intact.
    const c = await connect({ port, timeout: 20_000 });
    expect((await c.request(benchBody(0, 'alive'))).toString()).toBe('alive');
    c.close();
    const s = JSON.parse((await get(admin, '/debug/stats')).body);
    expect(s.pool.threads.map((t: { threadId: number }) => t.threadId)).toEqual(workerIds);
  });

  it('a whole worker snapshot read to the end is valid JSON', async () => {
    const r = await get(admin, `/debug/heap?thread=${workerIds[0]}`);
    expect(r.status, r.body).toBe(200);
    expect(r.headers['content-disposition']).toMatch(/\.heapsnapshot"$/);
    const snap = JSON.parse(r.body);
    expect(snap.nodes.length).toBe(snap.snapshot.node_count * snap.snapshot.meta.node_fields.length);
  });
});

describe('bad requests get a 4xx with the reason', () => {
  it.each([
    ['/debug/profile?thread=999999', 404, 'no worker thread 999999 (live workers: '],
    ['/debug/heap?thread=424242', 404, 'no worker thread 424242'],
    ['/debug/profile?seconds=abc', 400, "seconds must be a number > 0 and <= 120 (got 'abc')"],
    ['/debug/profile?seconds=0', 400, "seconds must be a number > 0 and <= 120 (got '0')"],
    ['/debug/profile?seconds=-1', 400, 'seconds must be a number'],
    ['/debug/profile?seconds=1000', 400, "(got '1000')"],
    ['/debug/profile?seconds=1&seconds=2', 400, "query parameter 'seconds' given twice"],
    ['/debug/profile?thread=worker-1', 400, "thread must be 'main' or a worker threadId (got 'worker-1')"],
    ['/debug/profile?secs=1', 400, "unknown query parameter 'secs' for /debug/profile; allowed: seconds, thread"],
    ['/debug/heap?seconds=1', 400, "unknown query parameter 'seconds' for /debug/heap; allowed: thread"],
    ['/metrics?format=json', 400, "unknown query parameter 'format' for /metrics; this endpoint takes none"],
    ['/nope', 404, 'no such endpoint: /nope'],
  ])('GET %s -> %i', async (path, status, reason) => {
    const r = await get(admin, path);
    expect(r.status).toBe(status);
    expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(r.body).toContain(reason);
  });

  it('methods other than GET (and HEAD on cheap endpoints) are 405 with Allow', async () => {
    const post = await get(admin, '/metrics', 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
    const head = await get(admin, '/debug/profile?seconds=1', 'HEAD');
    expect(head.status).toBe(405);
    expect(head.headers.allow).toBe('GET');
  });

  it('the index lists the endpoints', async () => {
    const r = await get(admin, '/');
    expect(r.status, r.body).toBe(200);
    for (const p of ['/metrics', '/healthz', '/readyz', '/debug/stats', '/debug/profile', '/debug/heap']) expect(r.body).toContain(p);
  });
});

describe('workers: 0', () => {
  it('only the main thread exists: a worker id is 404, main profiles fine', async () => {
    const s = createServer({ handler: EXAMPLES.echo, workers: 0, admin: { port: 0 } });
    await s.listen({ host: '127.0.0.1', port: 0 });
    try {
      const a = adminPort(s);
      const r = await get(a, '/debug/profile?seconds=0.2&thread=1');
      expect(r.status).toBe(404);
      expect(r.body).toContain('none: handlers run on the main thread');
      const stats = JSON.parse((await get(a, '/debug/stats')).body);
      expect(stats.pool.threads).toEqual([]);
      expect((await get(a, '/debug/profile?seconds=0.2')).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});
