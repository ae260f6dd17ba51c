import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lengthFrame, rawConnect, splitLengthFrames, waitFor, within } from '../helpers/wire.js';
import type { RawPeer } from '../helpers/wire.js';
import { withCanary } from './canary.js';
import { MiB, benchFrame, logsWith, note, spawnServer } from './child.js';
import type { ChildServer } from './child.js';

// Bytes that are not (or not quite) frames, against a server in a child process
// with the CLI defaults (maxFrame 1 MiB, error policy 'close'), 2 workers.
// Every case runs under the canary.

function frameErrors(srv: ChildServer, code: string): number {
  return logsWith(srv, 'connection error').filter((l) => l.code === code).length;
}

/** Wait for the server's FIN on `peer`, then close our side. */
async function serverCloses(peer: RawPeer, ms: number, what: string): Promise<void> {
  await within(peer.ended, ms, what);
  peer.socket.end();
  await within(peer.closed, 5000, `${what}: the socket closing once both sides ended`);
}

describe('hostile framing (child server, CLI defaults)', () => {
  let srv: ChildServer;
  beforeAll(async () => {
    srv = await spawnServer([]);
  });
  afterAll(() => srv?.stop());

  it('a length header claiming ~4 GiB: the connection is closed within 1 s; RSS grows < 20 MiB', async () => {
    const before = srv.rss();
    let peak = before;
    const tooLarge = frameErrors(srv, 'SHOAL_FRAME_TOO_LARGE');
    await withCanary(srv.port, async () => {
      // Ten in a row: an allocation of even a fraction of the claimed size would show.
      for (let i = 0; i < 10; i++) {
        const peer = await rawConnect(srv.port);
        // The header, then a little body: a server that trusts the header starts filling a 4 GiB buffer.
        peer.socket.write(Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff]), randomBytes(16 * 1024)]));
        await serverCloses(peer, 1000, `FIN within 1 s for a 4 GiB header (#${i})`);
        expect(peer.received().length).toBe(0);
        expect(peer.hadError()).toBeNull();
        peak = Math.max(peak, srv.rss());
      }
    });
    expect(peak - before).toBeLessThan(20 * MiB);
    await waitFor(() => frameErrors(srv, 'SHOAL_FRAME_TOO_LARGE') === tooLarge + 10, 'ten SHOAL_FRAME_TOO_LARGE log lines', 2000);
    note(`4 GiB header x10: RSS ${(before / MiB).toFixed(1)} -> peak ${(peak / MiB).toFixed(1)} MiB`);
  });

  it('200 connections with half a frame then FIN (100) or RST (100): descriptors back to baseline within 5 s', async () => {
    const truncated = frameErrors(srv, 'SHOAL_FRAME_TRUNCATED');
    await withCanary(srv.port, async () => {
      const base = srv.fds(); // with the canary's connection
      const peers = await Promise.all(Array.from({ length: 200 }, () => rawConnect(srv.port)));
      // Half of a 100-byte echo request.
      const half = benchFrame(0, Buffer.alloc(96, 0x61)).subarray(0, 52);
      for (const p of peers) p.socket.write(half);
      // Every connection reached the server before any is cut.
      const peak = await waitFor(() => (srv.fds() >= base + 200 ? srv.fds() : 0), 'the server holding all 200 connections', 10_000);
      await new Promise((r) => setTimeout(r, 100)); // let the halves arrive
      const fins = peers.filter((_, i) => i % 2 === 0);
      const rsts = peers.filter((_, i) => i % 2 === 1);
      for (const p of fins) p.socket.end();
      for (const p of rsts) p.socket.resetAndDestroy();
      // A FIN mid-frame: the server answers nothing (no whole frame) and closes.
      await Promise.all(fins.map((p, i) => within(p.closed, 5000, `the server closing half-frame connection #${i}`)));
      for (const p of fins) expect(p.received().length).toBe(0);
      const t0 = Date.now();
      await srv.fdsBackTo(base, 5000);
      note(`half frames x200: fds ${base} -> peak ${peak} -> ${srv.fds()} in ${Date.now() - t0} ms after the last FIN`);
    });
    // Each FIN mid-frame is reported as a truncated frame; an RST is not a frame error.
    await waitFor(() => frameErrors(srv, 'SHOAL_FRAME_TRUNCATED') === truncated + 100, '100 SHOAL_FRAME_TRUNCATED log lines', 2000);
  });

  it('a body shorter than the bench protocol 4-byte header: earlier replies, then the close policy; server healthy', async () => {
    const badRequests = logsWith(srv, 'handler error').filter((l) => l.code === 'SHOAL_BAD_REQUEST').length;
    await withCanary(srv.port, async () => {
      for (const body of [Buffer.alloc(0), Buffer.from([0]), Buffer.from([0, 0, 0])]) {
        const peer = await rawConnect(srv.port);
        const short = lengthFrame(body);
        peer.socket.write(Buffer.concat([benchFrame(0, 'before'), short, benchFrame(0, 'after')]));
        await serverCloses(peer, 5000, `FIN after a ${body.length}-byte body`);
        // 'before' is answered; the short body gets the policy (close); 'after' is never read.
        expect(splitLengthFrames(peer.received()).map(String)).toEqual(['before']);
      }
    });
    await waitFor(
      () => logsWith(srv, 'handler error').filter((l) => l.code === 'SHOAL_BAD_REQUEST').length === badRequests + 3,
      'three SHOAL_BAD_REQUEST log lines',
      2000,
    );
  });

  it('64 KiB of random bytes on 50 connections: each closed with SHOAL_FRAME_TOO_LARGE, a clean FIN, fds back to baseline', async () => {
    const tooLarge = frameErrors(srv, 'SHOAL_FRAME_TOO_LARGE');
    await withCanary(srv.port, async () => {
      const base = srv.fds();
      const peers = await Promise.all(Array.from({ length: 50 }, () => rawConnect(srv.port)));
      for (const p of peers) {
        const junk = randomBytes(64 * 1024);
        // Random, except that the first byte is never 0: with 1 chance in 4096 the first four
        // bytes would otherwise be a legal length, and the next four a K of billions of hashes
        // (a real request of hours of CPU, not garbage). This keeps the case about garbage.
        junk[0] |= 0x10;
        p.socket.write(junk);
      }
      await Promise.all(peers.map((p, i) => serverCloses(p, 5000, `the server closing random-bytes connection #${i}`)));
      for (const p of peers) {
        expect(p.received().length).toBe(0);
        // A lingering close: the server reads and discards the rest, so our unread bytes never turn into an RST.
        expect(p.hadError()).toBeNull();
      }
      await srv.fdsBackTo(base, 5000);
    });
    await waitFor(() => frameErrors(srv, 'SHOAL_FRAME_TOO_LARGE') === tooLarge + 50, '50 SHOAL_FRAME_TOO_LARGE log lines', 2000);
  });

  it('a frame of exactly maxFrame (a 1 MiB body, the bench protocol LEN) echoes correctly; one byte more closes the connection', async () => {
    await withCanary(srv.port, async () => {
      const payload = randomBytes(MiB - 4); // body = [K = 0][payload] = 1 MiB; wire frame = 1 MiB + 4
      const peer = await rawConnect(srv.port);
      const frame = benchFrame(0, payload);
      expect(frame.length).toBe(MiB + 4);
      peer.socket.write(frame);
      await waitFor(() => peer.received().length >= 4 + payload.length, 'the 1 MiB echo', 10_000);
      const [reply] = splitLengthFrames(peer.received());
      expect(reply!.equals(payload)).toBe(true);
      // Now one byte over: the header alone is refused.
      const over = benchFrame(0, Buffer.alloc(MiB - 3));
      expect(over.length).toBe(MiB + 5);
      peer.socket.write(over);
      await serverCloses(peer, 5000, 'FIN after a frame of maxFrame + 1');
      expect(peer.received().length).toBe(4 + payload.length);
    });
  });
});
