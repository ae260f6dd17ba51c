import { describe, expect, it } from 'vitest';
import { connect, createServer } from '../../dist/src/index.js';
import type { Client, ShoalServer } from '../../dist/src/index.js';
import { EXAMPLES } from '../helpers/server.js';
import { waitFor } from '../helpers/wire.js';
import { ADMIN_FIXTURES, adminPort, captureLogger, get, sample, scrape } from './helpers.js';
// [u32 BE route][payload]: the same bytes as a bench-protocol body with K = route.
import { benchBody as routed } from '../helpers/server.js';
import type { Line } from './helpers.js';

// /metrics scraped during and after a load: every counter must match what the
// client sent and received, byte for byte.

const CONNECTIONS = 4;
const ROUNDS = 5;
const PER_ROUND = 200; // requests per connection per round
const PAYLOAD = Buffer.alloc(64, 7);

async function startWith(workers: number, extra: object = {}): Promise<{ server: ShoalServer; port: number; admin: number }> {
  const server = createServer({ handler: EXAMPLES.echo, workers, admin: { port: 0 }, drainTimeout: 3000, ...extra });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  return { server, port, admin: adminPort(server) };
}

/** The routes fixture on 2 workers, error frames for failures, logging into `lines`. */
function startRoutes(lines: Line[], extra: object): ReturnType<typeof startWith> {
  return startWith(2, {
    handler: `${ADMIN_FIXTURES}routes.js`,
    routing: { idBytes: 4 },
    onHandlerError: 'error-frame',
    logger: captureLogger(lines),
    ...extra,
  });
}

describe.each([2, 0])('counters under load, workers: %i', (workers) => {
  it('frames, replies, bytes, connections and histograms match what the client sent and received', async () => {
    // offload 'always': with workers every echo runs in a worker, so the workers' counters see every message.
    const { server, port, admin } = await startWith(workers, workers > 0 ? { offload: 'always' } : {});
    const clients: Client[] = [];
    try {
      for (let i = 0; i < CONNECTIONS; i++) clients.push(await connect({ port, timeout: 20_000 }));
      let sent = 0;
      let received = 0;
      let last = { frames: 0, replies: 0 };
      for (let round = 0; round < ROUNDS; round++) {
        const pending = clients.flatMap((c) => Array.from({ length: PER_ROUND }, () => c.request(PAYLOAD)));
        sent += pending.length;
        // Scraped while this round is in flight: never more than was sent, never going back.
        const mid = await scrape(admin);
        const frames = sample(mid, 'shoal_frames_received_total');
        const replies = sample(mid, 'shoal_replies_sent_total');
        expect(frames).toBeLessThanOrEqual(sent);
        expect(replies).toBeLessThanOrEqual(frames);
        expect(frames).toBeGreaterThanOrEqual(last.frames);
        expect(replies).toBeGreaterThanOrEqual(last.replies);
        last = { frames, replies };
        const replies2 = await Promise.all(pending);
        received += replies2.length;
        for (const r of replies2) expect(r.equals(PAYLOAD)).toBe(true);
      }
      const n = sent;
      expect(received).toBe(n);
      const wire = 4 + PAYLOAD.length; // [u32 length][body], both ways
      const m = await scrape(admin);
      expect(sample(m, 'shoal_frames_received_total')).toBe(n);
      expect(sample(m, 'shoal_replies_sent_total')).toBe(n);
      expect(sample(m, 'shoal_bytes_received_total')).toBe(n * wire);
      expect(sample(m, 'shoal_bytes_sent_total')).toBe(n * wire);
      expect(sample(m, 'shoal_connections_active')).toBe(CONNECTIONS);
      expect(sample(m, 'shoal_connections_total', { outcome: 'accepted' })).toBe(CONNECTIONS);
      expect(sample(m, 'shoal_connections_total', { outcome: 'rejected' })).toBe(0);
      expect(sample(m, 'shoal_handler_errors_total', { policy: 'close' })).toBe(0);
      expect(sample(m, 'shoal_in_flight_frames')).toBe(0);
      expect(sample(m, 'shoal_send_queue_bytes')).toBe(0);
      expect(sample(m, 'shoal_paused_connections')).toBe(0);
      // Every handler call was timed once (in the workers, or inline), in buckets that add up.
      expect(sample(m, 'shoal_handler_duration_seconds_count')).toBe(n);
      expect(sample(m, 'shoal_handler_duration_seconds_bucket', { le: '+Inf' })).toBe(n);
      const sum = sample(m, 'shoal_handler_duration_seconds_sum');
      expect(sum).toBeGreaterThan(0);
      expect(sum).toBeLessThan(n * 0.001); // an echo takes far less than 1 ms
      if (workers > 0) {
        // Batches: frames per batch add up to every frame; each batch waited once for a worker.
        const batches = sample(m, 'shoal_batch_frames_count');
        expect(sample(m, 'shoal_batch_frames_sum')).toBe(n);
        expect(batches).toBeGreaterThan(0);
        expect(batches).toBeLessThanOrEqual(n);
        expect(sample(m, 'shoal_pool_queue_wait_seconds_count')).toBe(batches);
        expect(sample(m, 'shoal_pool_threads')).toBe(workers);
        expect(sample(m, 'shoal_pool_busy_seconds_total')).toBeGreaterThan(0);
        const u = sample(m, 'shoal_pool_utilization');
        expect(u).toBeGreaterThanOrEqual(0);
        expect(u).toBeLessThanOrEqual(1);
        const { threads } = server.admin!.stats().pool as { threads: { threadId: number }[] };
        expect(threads).toHaveLength(workers);
        for (const w of threads) {
          expect(m.has(`shoal_event_loop_utilization{thread="${w.threadId}"}`)).toBe(true);
        }
      }
      expect(sample(m, 'shoal_event_loop_utilization', { thread: 'main' })).toBeGreaterThan(0);
      expect(sample(m, 'shoal_ready')).toBe(1);
      // prom-client's default process metrics are there too.
      expect(m.has('process_cpu_user_seconds_total')).toBe(true);
      expect(m.has('nodejs_heap_size_used_bytes')).toBe(true);
    } finally {
      for (const c of clients) c.close();
      await server.close();
    }
  });
});

describe('labelled counters', () => {
  it('frame errors by code, budget hits by budget, handler errors by policy, durations by route', async () => {
    const lines: Line[] = [];
    const { server, port, admin } = await startRoutes(lines, { maxFrame: 1024 });
    try {
      const c = await connect({ port, timeout: 20_000 });
      const echoes = await Promise.all(Array.from({ length: 50 }, (_, i) => c.request(routed(1, `e${i}`))));
      expect(echoes.map((r) => r.subarray(4).toString())).toEqual(Array.from({ length: 50 }, (_, i) => `e${i}`));
      const errors = await Promise.all(Array.from({ length: 3 }, () => c.request(routed(2, 'x'))));
      for (const e of errors) expect(e.subarray(4).toString()).toContain('route 2 always fails');
      await Promise.all(Array.from({ length: 10 }, () => c.request(routed(3, 'slow'))));
      // A frame over maxFrame closes its connection: one SHOAL_FRAME_TOO_LARGE, one maxFrame budget hit.
      const bad = await connect({ port, timeout: 20_000 });
      const header = Buffer.alloc(4);
      header.writeUInt32BE(1_000_000);
      bad.writeRaw(header);
      await waitFor(() => server.stats().counters.frameErrors === 1, 'the frame error');
      const m = await scrape(admin);
      expect(sample(m, 'shoal_frame_errors_total', { code: 'SHOAL_FRAME_TOO_LARGE' })).toBe(1);
      expect(sample(m, 'shoal_frame_errors_total', { code: 'SHOAL_FRAME_TRUNCATED' })).toBe(0);
      expect(sample(m, 'shoal_budget_hits_total', { budget: 'maxFrame' })).toBe(1);
      expect(sample(m, 'shoal_handler_errors_total', { policy: 'error-frame' })).toBe(3);
      // Per route: route 1 (50 echoes), 2 (3 throws), 3 (10 × ~2 ms of CPU: none under 1 ms).
      expect(sample(m, 'shoal_handler_duration_seconds_count', { route: '1' })).toBe(50);
      expect(sample(m, 'shoal_handler_duration_seconds_count', { route: '2' })).toBe(3);
      expect(sample(m, 'shoal_handler_duration_seconds_count', { route: '3' })).toBe(10);
      expect(sample(m, 'shoal_handler_duration_seconds_bucket', { route: '3', le: '0.001' })).toBe(0);
      expect(sample(m, 'shoal_handler_duration_seconds_bucket', { route: '3', le: '1' })).toBe(10); // generous: CI preempts
      expect(sample(m, 'shoal_handler_duration_seconds_sum', { route: '3' })).toBeGreaterThanOrEqual(0.02);
      expect(sample(m, 'shoal_handler_duration_seconds_bucket', { route: '1', le: '0.1' })).toBe(50);
      expect(sample(m, 'shoal_handler_duration_seconds_sum', { route: '1' })).toBeLessThan(sample(m, 'shoal_handler_duration_seconds_sum', { route: '3' }));
      // The connection error was logged once, by the connection's child logger (id and peer bound).
      const connErrors = lines.filter((l) => l.msg === 'connection error');
      expect(connErrors).toHaveLength(1);
      expect(connErrors[0]).toMatchObject({ level: 'warn', code: 'SHOAL_FRAME_TOO_LARGE', conn: expect.any(Number), remote: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
      const handlerErrors = lines.filter((l) => l.msg === 'handler error');
      expect(handlerErrors).toHaveLength(3);
      expect(handlerErrors[0]).toMatchObject({ conn: expect.any(Number), remote: expect.any(String), policy: 'error-frame' });
      // Nothing is logged per frame at info: 63 messages, no info line about them.
      expect(lines.filter((l) => l.level === 'info' && l.msg !== 'listening' && l.msg !== 'admin server listening')).toEqual([]);
      c.close();
      bad.close();
    } finally {
      await server.close();
    }
  });

  it('worker restarts by reason: handler_timeout and exit, each logged once', async () => {
    const lines: Line[] = [];
    const { server, port, admin } = await startRoutes(lines, { handlerTimeout: 300 });
    try {
      const c = await connect({ port, timeout: 20_000 });
      const stuck = await c.request(routed(4, 'loop'));
      expect(stuck.subarray(4).toString()).toContain('SHOAL_HANDLER_TIMEOUT');
      const exited = await c.request(routed(5, 'exit'));
      expect(exited.subarray(4).toString()).toContain('SHOAL_WORKER_DIED');
      await waitFor(async () => {
        const m = await scrape(admin);
        return sample(m, 'shoal_worker_restarts_total', { reason: 'handler_timeout' }) === 1 &&
          sample(m, 'shoal_worker_restarts_total', { reason: 'exit' }) === 1 &&
          sample(m, 'shoal_pool_threads') === 2;
      }, 'both restarts counted and the pool back to 2 threads');
      expect((await c.request(routed(1, 'still here'))).subarray(4).toString()).toBe('still here');
      const replaced = lines.filter((l) => l.msg === 'worker replaced');
      expect(replaced.map((l) => l.reason).sort()).toEqual(['exit', 'handler_timeout']);
      for (const l of replaced) {
        expect(l.level).toBe('warn');
        expect(l.threadId).toBeGreaterThan(0);
      }
      c.close();
    } finally {
      await server.close();
    }
  });
});

describe('event loops', () => {
  it('main and (with atomics async, whose loops turn between tasks) each worker report delay and utilization', async () => {
    const { server, port, admin } = await startWith(1, { atomics: 'async' });
    try {
      const c = await connect({ port, timeout: 20_000 });
      const until = Date.now() + 1300; // workers publish their loop delay at most once a second
      while (Date.now() < until) await Promise.all(Array.from({ length: 16 }, () => c.request(PAYLOAD)));
      await c.request(PAYLOAD); // a batch after the second is up
      c.close();
      const m = await scrape(admin);
      const [worker] = (server.admin!.stats().pool as { threads: { threadId: number }[] }).threads;
      for (const thread of ['main', String(worker!.threadId)]) {
        for (const stat of ['mean', 'p99', 'max']) {
          const v = sample(m, `shoal_event_loop_delay_${stat}_seconds`, { thread });
          expect(v).toBeGreaterThanOrEqual(0);
          expect(v).toBeLessThan(5);
        }
        const u = sample(m, 'shoal_event_loop_utilization', { thread });
        expect(u).toBeGreaterThan(0);
        expect(u).toBeLessThanOrEqual(1);
      }
    } finally {
      await server.close();
    }
  });
});

describe('metrics off', () => {
  it('admin.metrics: false serves probes but /metrics is 404, and workers measure nothing', async () => {
    const server = createServer({ handler: EXAMPLES.echo, workers: 1, admin: { port: 0, metrics: false } });
    await server.listen({ host: '127.0.0.1', port: 0 });
    try {
      const port = adminPort(server);
      const r = await get(port, '/metrics');
      expect(r.status).toBe(404);
      expect(r.body).toContain('metrics are off');
      expect((await get(port, '/healthz')).status).toBe(200);
      expect(server.admin!.metrics).toBeNull();
    } finally {
      await server.close();
    }
  });
});
