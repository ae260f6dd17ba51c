import { connect as netConnect } from 'node:net';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JS example module without type declarations
import { sha256Chain } from '../../examples/bench-protocol/sha256.js';
import { rawConnect, sleep, splitLengthFrames, within } from '../helpers/wire.js';
import type { RawPeer } from '../helpers/wire.js';
import { Canary, expectHealthy } from './canary.js';
import { benchFrame, note, spawnServer } from './child.js';

// SIGTERM under load, against the CLI in a child process: the only way to test
// the signal path and the exit status.

const DRAIN_TIMEOUT = 10_000;
const CONNS = 32;
const DEPTH = 8;
/**
 * ~1 ms of CPU per request in a worker: 256 in flight are ~130 ms of work queued for
 * 2 workers. Much heavier, and the canary's requests, queued FIFO behind them, wait
 * over 1 s on a busy 2-core machine: a full queue, not a blocked server.
 */
const HEAVY_K = 2_000;
/** A request written this long before the signal has certainly been read by the server (loopback, idle main thread). */
const READ_MARGIN_MS = 200;

interface Sent {
  at: number;
  payload: Buffer;
}

describe('SIGTERM while 32 connections keep 8 heavy requests each in flight (child server)', () => {
  it('every request received before the signal is answered, new connections are refused, exit 0 within the drain deadline', { timeout: 60_000 }, async () => {
    const srv = await spawnServer(['--drain-timeout', `${DRAIN_TIMEOUT}ms`]);
    try {
      const canary = await Canary.start(srv.port);
      const peers: RawPeer[] = await Promise.all(Array.from({ length: CONNS }, () => rawConnect(srv.port)));
      const sent: Sent[][] = peers.map(() => []);
      let stopSending = false;
      // A closed loop per connection: DEPTH requests in flight, a new one written for each reply.
      const send = (c: number): void => {
        if (stopSending) return;
        const payload = Buffer.from(`c${c}-r${sent[c]!.length}`);
        sent[c]!.push({ at: Date.now(), payload });
        peers[c]!.socket.write(benchFrame(HEAVY_K, payload));
      };
      peers.forEach((p, c) => {
        let replies = 0;
        let buffered = 0;
        p.socket.on('data', (chunk: Buffer) => {
          buffered += chunk.length;
          // Count whole 36-byte replies ([len 32][digest]) as they arrive, to keep the loop going.
          const whole = Math.floor(buffered / 36);
          for (; replies < whole; replies++) send(c);
        });
        for (let i = 0; i < DEPTH; i++) send(c);
      });
      await sleep(1500); // the pool is busy: 256 heavy requests always queued or running
      expectHealthy(await canary.stop());

      // The clients never answer the server's FIN (lazy clients): each connection then stays
      // 'closing' for the server's linger time, which keeps the drain open long enough to
      // see the listener refuse connections while the process is still alive.
      const signalAt = Date.now();
      srv.proc.kill('SIGTERM');
      // New connections are refused while the old ones drain: try every 10 ms from the signal on.
      // Attempts that race the signal may still be accepted (and drained); once one is refused,
      // none may connect again, and the first refusal must come before the process exits.
      const attempts: { result: string; serverAlive: boolean }[] = [];
      for (let i = 0; i < 100; i++) {
        const result = await new Promise<string>((resolve) => {
          const s = netConnect({ host: '127.0.0.1', port: srv.port });
          s.once('connect', () => {
            s.destroy();
            resolve('connected');
          });
          s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        });
        attempts.push({ result, serverAlive: srv.proc.exitCode === null });
        if (attempts.filter((a) => a.result === 'ECONNREFUSED').length >= 5) break;
        await sleep(10);
      }
      const firstRefusal = attempts.findIndex((a) => a.result === 'ECONNREFUSED');
      expect(firstRefusal, JSON.stringify(attempts)).toBeGreaterThanOrEqual(0);
      expect(attempts[firstRefusal]!.serverAlive, 'refused while the server was still draining').toBe(true);
      expect(attempts.slice(firstRefusal).every((a) => a.result === 'ECONNREFUSED')).toBe(true);

      const exit = await within(srv.exited, DRAIN_TIMEOUT + 5000, 'the server exiting');
      stopSending = true;
      expect(exit.code).toBe(0);
      expect(exit.at - signalAt).toBeLessThan(DRAIN_TIMEOUT);

      let answered = 0;
      let mustAnswer = 0;
      let written = 0;
      for (const [c, p] of peers.entries()) {
        await within(p.ended, 5000, `FIN on connection ${c}`);
        const replies = splitLengthFrames(p.received());
        // Replies are a prefix of the requests, each correct.
        replies.forEach((r, i) => {
          // The pure-JS chain (checked against node:crypto in test/examples): node:crypto would
          // spend ~20 s here on ~1,000 x 5,000 hashes.
          if (!r.equals(sha256Chain(sent[c]![i]!.payload, HEAVY_K))) throw new Error(`connection ${c}: reply ${i} is wrong`);
        });
        const before = sent[c]!.filter((s) => s.at <= signalAt - READ_MARGIN_MS).length;
        expect(replies.length, `connection ${c}: requests written ${READ_MARGIN_MS} ms before the signal`).toBeGreaterThanOrEqual(before);
        expect(p.hadError()).toBeNull(); // FIN, never RST
        answered += replies.length;
        mustAnswer += before;
        written += sent[c]!.length;
        p.socket.destroy();
      }
      const lines = srv.logs.map((l) => l.msg);
      expect(lines).toContain('recv quit signal: shutting down gracefully');
      expect(lines).toContain('all done');
      const done = srv.logs.find((l) => l.msg === 'all done')!;
      expect(done.destroyed).toBe(0); // everything drained before the deadline
      note(`SIGTERM: ${written} requests written, ${mustAnswer} before the signal - ${READ_MARGIN_MS} ms, ${answered} answered; exit 0 after ${exit.at - signalAt} ms`);
    } finally {
      await srv.stop();
    }
  });
});
