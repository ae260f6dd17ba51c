import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countLengthFrames, rawConnect, sleep, splitLengthFrames, waitFor, within } from '../helpers/wire.js';
import { withCanary } from './canary.js';
import { MiB, benchFrame, fdLimit, logsWith, note, spawnServer } from './child.js';
import type { ChildServer } from './child.js';

// Many connections, slow connections, a connection that never reads. The server
// runs in a child process (its descriptors and RSS are its own); the attackers
// run here; the canary runs in its own thread.

/** TcpExt ListenOverflows of this host (handshakes dropped because an accept queue was full). */
function listenOverflows(): number {
  const [head, values] = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
  const i = head!.split(' ').indexOf('ListenOverflows');
  return Number(values!.split(' ')[i]);
}

/** Descriptors a process needs besides the sockets of a case (stdio, epoll, pipes, workers, vitest). */
const FD_OVERHEAD = 200;

/**
 * The case needs `sockets` descriptors here (clients) and in the server (accepted).
 * Children inherit our limits, so one check covers both. A limit too low fails the
 * case with the reason, rather than skipping it.
 */
function requireFds(sockets: number): void {
  const { soft, hard } = fdLimit();
  expect(soft, `ulimit -n is ${soft} (hard ${hard}); this case needs ${sockets + FD_OVERHEAD} per process: raise it (ulimit -n ${sockets + FD_OVERHEAD})`).toBeGreaterThanOrEqual(
    sockets + FD_OVERHEAD,
  );
}

describe('floods (child server, CLI defaults)', () => {
  let srv: ChildServer;
  beforeAll(async () => {
    srv = await spawnServer([]);
  });
  afterAll(() => srv?.stop());

  it('slowloris: 500 connections dribbling one header byte per second; every request answered once complete', { timeout: 30_000 }, async () => {
    requireFds(500);
    await withCanary(srv.port, async () => {
      const base = srv.fds();
      const peers = await Promise.all(Array.from({ length: 500 }, () => rawConnect(srv.port)));
      const frames = peers.map((_, i) => benchFrame(0, `slow-${i}`));
      // The 4 header bytes one per second (4 s), then the body at once.
      for (let b = 0; b < 4; b++) {
        for (let i = 0; i < peers.length; i++) peers[i]!.socket.write(frames[i]!.subarray(b, b + 1));
        await sleep(1000);
      }
      expect(srv.fds()).toBeGreaterThanOrEqual(base + 500);
      for (let i = 0; i < peers.length; i++) peers[i]!.socket.write(frames[i]!.subarray(4));
      await waitFor(() => peers.every((p, i) => p.received().length >= 4 + `slow-${i}`.length), 'all 500 slow requests answered', 10_000, 50);
      peers.forEach((p, i) => expect(splitLengthFrames(p.received()).map(String)).toEqual([`slow-${i}`]));
      for (const p of peers) p.socket.end();
      await Promise.all(peers.map((p, i) => within(p.closed, 5000, `slow connection #${i} closing`)));
      await srv.fdsBackTo(base, 5000);
    });
  });

  it('3,000 connections opened at once, then reset: descriptors back to baseline within 5 s', { timeout: 60_000 }, async () => {
    requireFds(3000);
    await withCanary(srv.port, async () => {
      const base = srv.fds();
      const overflowsBefore = listenOverflows();
      const t0 = Date.now();
      const sockets: Socket[] = [];
      const connected = Array.from({ length: 3000 }, () => {
        const s = netConnect({ host: '127.0.0.1', port: srv.port });
        sockets.push(s);
        return new Promise<string | null>((resolve) => {
          s.once('connect', () => {
            // One byte (the start of a header), as a real client would send. It also matters to TCP:
            // Node listens with a backlog of 511, so most of 3,000 simultaneous handshakes overflow
            // the accept queue and finish on a SYN cookie; a client that sends nothing would stay
            // "connected" on its side while the server never hears of it. Data makes the kernel retry.
            s.write(Buffer.from([0]));
            resolve(null);
          });
          s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
        });
      });
      const errors = (await within(Promise.all(connected), 30_000, '3000 connects')).filter((e) => e !== null);
      expect(errors).toEqual([]);
      // The kernel completes handshakes before the server accepts: wait until it holds them all.
      const peak = await waitFor(() => (srv.fds() >= base + 3000 ? srv.fds() : 0), `the server holding 3000 connections (has ${srv.fds() - base})`, 20_000, 50);
      const opened = Date.now() - t0;
      for (const s of sockets) {
        s.on('error', () => {});
        s.resetAndDestroy();
      }
      const t1 = Date.now();
      await srv.fdsBackTo(base, 5000);
      note(`3000 connections: ${listenOverflows() - overflowsBefore} accept-queue overflows (host-wide); all accepted in ${opened} ms (fds ${base} -> ${peak}); back to ${srv.fds()} ${Date.now() - t1} ms after the resets`);
    });
    // The server is still whole: a new client is served.
    const peer = await rawConnect(srv.port);
    peer.socket.end(benchFrame(0, 'after the storm'));
    await within(peer.closed, 5000, 'a request after the storm');
    expect(splitLengthFrames(peer.received()).map(String)).toEqual(['after the storm']);
  });
});

describe('a client that pipelines 16 KiB requests for 10 s and never reads (child server, --send-timeout 2s)', () => {
  let srv: ChildServer;
  beforeAll(async () => {
    srv = await spawnServer(['--send-timeout', '2s']);
  });
  afterAll(() => srv?.stop());

  it('reading from it stops, the send timeout cuts it (again and again), server RSS grows < 64 MiB', { timeout: 40_000 }, async () => {
    // Warm the server first with ordinary traffic of the same size: the bound is on what the
    // attack costs, not on first use (JIT code, three isolates' heaps, socket buffer pools).
    const warm = await rawConnect(srv.port);
    const warmRequest = benchFrame(0, Buffer.alloc(16 * 1024 - 4, 0x77));
    for (let round = 1; round <= 20; round++) {
      warm.socket.write(Buffer.concat(Array.from({ length: 32 }, () => warmRequest)));
      // Replies stream: a 16 KiB echo may be half in when this looks.
      await waitFor(() => countLengthFrames(warm.received()) >= round * 32, 'warm-up replies', 10_000);
    }
    warm.socket.end();
    await within(warm.closed, 5000, 'the warm-up connection closing');
    const before = srv.rss();
    let peak = before;
    let cuts = 0;
    let written = 0;
    await withCanary(srv.port, async () => {
      const request = benchFrame(0, Buffer.alloc(16 * 1024 - 4, 0x78)); // a 16 KiB body; the echo is as large
      const until = Date.now() + 10_000;
      const sampler = setInterval(() => (peak = Math.max(peak, srv.rss())), 100);
      try {
        while (Date.now() < until) {
          // A new greedy client each time the server cuts the last one.
          const s = netConnect({ host: '127.0.0.1', port: srv.port });
          s.on('error', () => {});
          const closed = new Promise<void>((r) => s.once('close', () => r()));
          await new Promise<void>((r) => s.once('connect', () => r()));
          // Never a 'data' listener and never resume(): nothing is ever read.
          let open = true;
          void closed.then(() => (open = false));
          while (open && Date.now() < until) {
            if (s.write(request)) {
              written += request.length;
              continue;
            }
            written += request.length;
            // Our side is full too: wait for room (it never comes), the cut, or the end of the run.
            await Promise.race([new Promise((r) => s.once('drain', r)), closed, sleep(until - Date.now())]);
          }
          if (!open) cuts++;
          s.destroy();
        }
      } finally {
        clearInterval(sampler);
      }
    });
    peak = Math.max(peak, srv.rss());
    note(`never-reading pipeliner: ${(written / MiB).toFixed(1)} MiB offered, ${cuts} cuts, RSS ${(before / MiB).toFixed(1)} -> peak ${(peak / MiB).toFixed(1)} -> ${(srv.rss() / MiB).toFixed(1)} MiB`);
    expect(cuts).toBeGreaterThanOrEqual(2);
    expect(peak - before).toBeLessThan(64 * MiB);
    const sendTimeouts = logsWith(srv, 'connection error').filter((l) => l.code === 'SHOAL_SEND_TIMEOUT');
    expect(sendTimeouts.length).toBe(cuts);
    expect(logsWith(srv, 'budget hit').some((l) => l.budget === 'sendTimeout')).toBe(true);
  });
});
