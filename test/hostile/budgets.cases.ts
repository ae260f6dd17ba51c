import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { Connection, Logger, ServerOptions, ShoalError } from '../../dist/src/index.js';
import { start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { rawConnect, sleep, splitLengthFrames, waitFor, within } from '../helpers/wire.js';
import { withCanary } from './canary.js';
import { HOSTILE_HANDLER, K, benchFrame } from './child.js';

// Every budget hit once, over real sockets, with real workers (workers: 2), in
// the test process so the counter (stats().budgetHits), the 'budget' event and
// the log line can all be checked. Each budget gets its own server.

interface LogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string | undefined;
}

interface Budgeted extends Running {
  budgetEvents: { budget: string; details: Record<string, unknown> }[];
  closes: { id: number; code: string | null }[];
  logs: LogEntry[];
}

async function serve(options: Partial<ServerOptions>): Promise<Budgeted> {
  const logs: LogEntry[] = [];
  const at =
    (level: LogEntry['level']) =>
    (obj: unknown, msg?: string): void => {
      logs.push({ level, obj: obj as Record<string, unknown>, msg });
    };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  logger.child = () => logger;
  const s = await start({ handler: HOSTILE_HANDLER, workers: 2, logger, ...options });
  const budgetEvents: Budgeted['budgetEvents'] = [];
  const closes: Budgeted['closes'] = [];
  s.server.on('budget', (budget: string, details: Record<string, unknown>) => budgetEvents.push({ budget, details }));
  s.server.on('connectionClose', (c: Connection, e: ShoalError | null) => closes.push({ id: c.id, code: e?.code ?? null }));
  return { ...s, budgetEvents, closes, logs };
}

/** The counter, the event and the log line for one budget (warn, or debug for plain back pressure). */
function expectHit(s: Budgeted, budget: string, times: number, level: 'warn' | 'debug' = 'warn'): void {
  expect(s.server.stats().budgetHits[budget as keyof ReturnType<typeof s.server.stats>['budgetHits']], `budgetHits.${budget}`).toBe(times);
  expect(s.budgetEvents.filter((e) => e.budget === budget).length, `'budget' events for ${budget}`).toBe(times);
  expect(s.logs.some((l) => l.level === level && l.msg === 'budget hit' && l.obj.budget === budget), `a ${level} 'budget hit' log line for ${budget}`).toBe(true);
}

function connId(s: Running, socket: Socket): Promise<number> {
  return waitFor(() => [...s.server.connections].find((c) => c.remotePort === socket.localPort)?.id, 'the server-side connection');
}

describe('budgets (in-process server, workers: 2)', () => {
  it('maxConnections: the connection over the cap is accepted and closed at once; the cap is live', async () => {
    const s = await serve({ maxConnections: 3 });
    try {
      await withCanary(s.port, async () => {
        const a = await rawConnect(s.port); // canary + a + b = 3
        const b = await rawConnect(s.port);
        await waitFor(() => s.server.connections.size === 3, 'three connections');
        const over = await rawConnect(s.port);
        await within(over.ended, 1000, 'the fourth connection closed at once');
        expect(over.received().length).toBe(0);
        expectHit(s, 'maxConnections', 1);
        expect(s.budgetEvents[0]!.details).toMatchObject({ limit: 3 });
        expect(s.server.stats().counters.connectionsRejected).toBe(1);
        // A slot freed is a slot usable.
        a.socket.destroy();
        await waitFor(() => s.server.connections.size === 2, 'a slot freed');
        const again = await rawConnect(s.port);
        again.socket.write(benchFrame(0, 'in'));
        await waitFor(() => again.received().length > 0, 'a reply on the new connection');
        expect(splitLengthFrames(again.received()).map(String)).toEqual(['in']);
        expectHit(s, 'maxConnections', 1);
        for (const p of [b, again]) p.socket.destroy();
      });
    } finally {
      await s.close();
    }
  });

  it('maxConnectionsPerIp: a third connection from 127.0.0.1 is closed; 127.0.0.2 is not limited by it', async () => {
    const s = await serve({ maxConnectionsPerIp: 2 });
    try {
      await withCanary(s.port, async () => {
        const a = await rawConnect(s.port); // canary + a = 2 from 127.0.0.1
        await waitFor(() => s.server.connections.size === 2, 'two connections');
        const over = await rawConnect(s.port);
        await within(over.ended, 1000, 'the third connection from 127.0.0.1 closed at once');
        expectHit(s, 'maxConnectionsPerIp', 1);
        expect(s.server.stats().counters.connectionsRejected).toBe(1);
        // Another loopback address has its own count.
        const other = netConnect({ host: '127.0.0.1', port: s.port, localAddress: '127.0.0.2' });
        const got: Buffer[] = [];
        other.on('data', (c: Buffer) => got.push(c));
        await new Promise((r) => other.once('connect', r));
        other.write(benchFrame(0, 'from .2'));
        await waitFor(() => Buffer.concat(got).length >= 11, 'a reply to 127.0.0.2');
        expect(splitLengthFrames(Buffer.concat(got)).map(String)).toEqual(['from .2']);
        expectHit(s, 'maxConnectionsPerIp', 1);
        other.destroy();
        a.socket.destroy();
      });
    } finally {
      await s.close();
    }
  });

  it('idleTimeout: a silent connection is closed with SHOAL_IDLE_TIMEOUT; one with a request in flight is not', async () => {
    const s = await serve({ idleTimeout: 500 });
    try {
      await withCanary(s.port, async () => {
        const busy = await rawConnect(s.port);
        // In flight for 1.2 s, longer than idleTimeout: not idle.
        busy.socket.write(benchFrame(K.SLEEP, '1200'));
        const silent = await rawConnect(s.port);
        const silentId = await connId(s, silent.socket);
        const t0 = Date.now();
        await within(silent.ended, 3000, 'the silent connection being closed');
        const after = Date.now() - t0;
        expect(after).toBeGreaterThanOrEqual(500);
        // An orderly close (FIN, then the server lingers for the peer's FIN): answer it, as a client does.
        silent.socket.end();
        await waitFor(() => s.closes.some((c) => c.id === silentId), 'connectionClose for the silent connection');
        expect(s.closes.find((c) => c.id === silentId)!.code).toBe('SHOAL_IDLE_TIMEOUT');
        await waitFor(() => busy.received().length > 0, 'the slow reply', 5000);
        expect(splitLengthFrames(busy.received()).map(String)).toEqual(['slept']);
        busy.socket.destroy(); // before it goes idle itself
        // The canary, which talks every 100 ms, was never idle.
        expectHit(s, 'idleTimeout', 1);
      });
    } finally {
      await s.close();
    }
  });

  it('sendTimeout: a peer that stops reading is paused at the high water mark, then cut with SHOAL_SEND_TIMEOUT; its queue is released', async () => {
    const s = await serve({ sendHighWater: 64 * 1024, sendLowWater: 16 * 1024, sendTimeout: 500 });
    try {
      await withCanary(s.port, async () => {
        const greedy = netConnect({ host: '127.0.0.1', port: s.port }); // never a 'data' listener: never reads
        greedy.on('error', () => {});
        const closed = new Promise<void>((r) => greedy.once('close', () => r()));
        await new Promise((r) => greedy.once('connect', r));
        const id = await connId(s, greedy);
        const request = benchFrame(0, Buffer.alloc(16 * 1024, 0x79));
        let open = true;
        void closed.then(() => (open = false));
        let pausedSeen = false;
        while (open) {
          if (!greedy.write(request)) await Promise.race([new Promise((r) => greedy.once('drain', r)), closed, sleep(100)]);
          if (s.server.stats().connections.paused > 0) pausedSeen = true;
        }
        await waitFor(() => s.closes.some((c) => c.id === id), 'the greedy connection cut');
        expect(s.closes.find((c) => c.id === id)!.code).toBe('SHOAL_SEND_TIMEOUT');
        expect(pausedSeen).toBe(true);
        expect(s.budgetEvents.some((e) => e.budget === 'sendHighWater')).toBe(true);
        expectHit(s, 'sendTimeout', 1);
        // Its queued replies went with it: only the canary's few bytes may be queued now.
        expect(s.server.stats().connections.queuedBytes).toBeLessThan(1024);
      });
    } finally {
      await s.close();
    }
  });

  it('handlerTimeout: the worker running an endless loop is replaced; the message gets the error policy; the others are answered', async () => {
    const s = await serve({ handlerTimeout: 300, onHandlerError: 'error-frame' });
    const failures: { code: string; messages: number }[] = [];
    s.server.on('workerFailure', (e: { code: string }, messages: number) => failures.push({ code: e.code, messages }));
    try {
      await withCanary(s.port, async () => {
        const peer = await rawConnect(s.port);
        const others = Array.from({ length: 20 }, (_, i) => benchFrame(0, `other-${i}`));
        peer.socket.write(Buffer.concat([benchFrame(0, 'first'), benchFrame(K.LOOP), ...others]));
        await waitFor(() => splitLengthFrames(peer.received()).length >= 22, 'all 22 replies', 5000);
        const replies = splitLengthFrames(peer.received());
        expect(replies[0]!.toString()).toBe('first');
        expect(JSON.parse(replies[1]!.toString()).error.code).toBe('SHOAL_HANDLER_TIMEOUT');
        expect(replies.slice(2).map(String)).toEqual(others.map((_, i) => `other-${i}`));
        expectHit(s, 'handlerTimeout', 1);
        expect(failures.filter((f) => f.code === 'SHOAL_HANDLER_TIMEOUT')).toEqual([{ code: 'SHOAL_HANDLER_TIMEOUT', messages: 1 }]);
        peer.socket.destroy();
      });
    } finally {
      await s.close();
    }
  });

  it('drainTimeout: close() destroys what is still busy at the deadline and reports it', async () => {
    const s = await serve({ drainTimeout: 500 });
    try {
      await withCanary(s.port, async () => {
        const quick = await rawConnect(s.port);
        quick.socket.write(benchFrame(0, 'quick'));
        await waitFor(() => quick.received().length > 0, 'the quick reply');
        quick.socket.destroy();
      });
      // The canary has gone (a drain ends every connection, the canary's too).
      const slow = await rawConnect(s.port);
      slow.socket.write(benchFrame(K.SLEEP, '5000'));
      await waitFor(() => s.server.stats().connections.inFlight === 1, 'the slow request in flight');
      const t0 = Date.now();
      const report = await within(s.server.close(), 5000, 'close() under a stuck connection');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(500);
      expect(report).toEqual({ connections: 1, drained: 0, destroyed: 1 });
      // A reset, not a FIN: the request was read and not answered, so its outcome is unknown
      // (a FIN would tell a retrying client it was never read).
      await within(slow.closed, 1000, 'the stuck connection destroyed');
      expect((slow.hadError() as NodeJS.ErrnoException | null)?.code).toBe('ECONNRESET');
      expect(slow.received().length).toBe(0);
      expectHit(s, 'drainTimeout', 1);
    } finally {
      await s.close();
    }
  });

  it('maxFrame: a frame over the limit closes its connection with SHOAL_FRAME_TOO_LARGE and is counted', async () => {
    const s = await serve({ maxFrame: 1024 });
    try {
      await withCanary(s.port, async () => {
        const peer = await rawConnect(s.port);
        const id = await connId(s, peer.socket);
        peer.socket.write(Buffer.concat([benchFrame(0, 'fits'), benchFrame(0, Buffer.alloc(1024))]));
        await within(peer.ended, 2000, 'FIN after the oversized frame');
        expect(splitLengthFrames(peer.received()).map(String)).toEqual(['fits']);
        peer.socket.destroy();
        await waitFor(() => s.closes.some((c) => c.id === id), 'the connection closed');
        expect(s.closes.find((c) => c.id === id)!.code).toBe('SHOAL_FRAME_TOO_LARGE');
        expectHit(s, 'maxFrame', 1);
      });
    } finally {
      await s.close();
    }
  });

  it('maxInFlightPerConnection: a pipelining peer never has more than the cap in flight; all its requests are answered', async () => {
    const s = await serve({ maxInFlightPerConnection: 8 });
    try {
      await withCanary(s.port, async () => {
        const peer = await rawConnect(s.port);
        let most = 0;
        const sampler = setInterval(() => {
          for (const c of s.server.connections) most = Math.max(most, c.inFlight);
        }, 2);
        peer.socket.write(Buffer.concat(Array.from({ length: 40 }, () => benchFrame(K.SLEEP, '20'))));
        await waitFor(() => splitLengthFrames(peer.received()).length >= 40, 'all 40 replies', 10_000);
        clearInterval(sampler);
        expect(splitLengthFrames(peer.received()).every((r) => r.toString() === 'slept')).toBe(true);
        expect(most).toBeGreaterThan(1);
        expect(most).toBeLessThanOrEqual(8);
        expect(s.server.stats().budgetHits.maxInFlightPerConnection).toBeGreaterThanOrEqual(1);
        expect(s.budgetEvents.some((e) => e.budget === 'maxInFlightPerConnection')).toBe(true);
        // Ordinary back pressure: logged at debug, not warn.
        expect(s.logs.some((l) => l.msg === 'budget hit' && l.obj.budget === 'maxInFlightPerConnection' && l.level === 'debug')).toBe(true);
        peer.socket.destroy();
      });
    } finally {
      await s.close();
    }
  });

  it('maxPendingFrames: the queue to the pool stays within the bound while every connection floods it; nothing is lost', async () => {
    const s = await serve({ maxPendingFrames: 16 });
    try {
      await withCanary(s.port, async () => {
        const peers = await Promise.all(Array.from({ length: 8 }, () => rawConnect(s.port)));
        let most = 0;
        const sampler = setInterval(() => (most = Math.max(most, s.server.stats().dispatcher.pendingFrames)), 1);
        peers.forEach((p, c) => p.socket.write(Buffer.concat(Array.from({ length: 50 }, (_, i) => benchFrame(K.SPIN, i % 10 === 0 ? '5' : '0')))));
        await Promise.all(peers.map((p) => waitFor(() => splitLengthFrames(p.received()).length >= 50, 'all 50 replies', 20_000)));
        clearInterval(sampler);
        for (const p of peers) expect(splitLengthFrames(p.received()).every((r) => r.toString() === 'spun')).toBe(true);
        expect(most).toBeGreaterThan(1);
        expect(most).toBeLessThanOrEqual(16);
        expect(s.server.stats().budgetHits.maxPendingFrames).toBeGreaterThanOrEqual(1);
        expect(s.budgetEvents.some((e) => e.budget === 'maxPendingFrames')).toBe(true);
        expect(s.logs.some((l) => l.msg === 'budget hit' && l.obj.budget === 'maxPendingFrames' && l.level === 'warn')).toBe(true);
        for (const p of peers) p.socket.destroy();
      });
    } finally {
      await s.close();
    }
  });
});
