import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from '../../dist/src/index.js';
import type { Client, Connection, ShoalError } from '../../dist/src/index.js';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { lengthFrame, settle, waitFor, within } from '../helpers/wire.js';

// The retry-safe close and the client that relies on it: two real servers (A and B),
// real sockets, and the client moving from A to B when A goes away.

const handler = `${FIXTURES}multi.js`;
const GOAWAY = lengthFrame('GOAWAY'); // one whole frame of the default framing
let running: Running[] = [];
let clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(running.splice(0).map((r) => r.close()));
});

async function pair(options: Record<string, unknown> = {}): Promise<[Running, Running]> {
  const a = await start({ handler, workers: 0, ...options });
  const b = await start({ handler, workers: 0, ...options });
  running.push(a, b);
  return [a, b];
}

async function client(a: Running, b: Running, options: Record<string, unknown> = {}): Promise<Client> {
  const c = await connect({ endpoints: [{ port: a.port }, { port: b.port }], timeout: 20_000, reconnect: true, ...options });
  clients.push(c);
  return c;
}

/** The framesIn / repliesOut of the next connection of `server` to close. */
function nextClose(r: Running): Promise<{ framesIn: number; repliesOut: number; code: string | null }> {
  return (once(r.server, 'connectionClose') as Promise<[Connection, ShoalError | null]>).then(([conn, err]) => ({
    framesIn: conn.counters.framesIn,
    repliesOut: conn.counters.repliesOut,
    code: err?.code ?? null,
  }));
}

describe('retry-safe closes and the reconnecting client', () => {
  it('drain (no going-away frame): requests A never read are re-sent to B, in order, exactly once; A answered all it read', async () => {
    const [a, b] = await pair();
    const c = await client(a, b);
    const aClosed = nextClose(a);
    const slow = c.request('promise:300,first');
    await waitFor(() => a.server.stats().connections.inFlight === 1, 'A reading the first request');
    const draining = once(a.server, 'draining');
    const closing = a.server.close();
    await draining; // A has stopped reading from every connection
    const later = ['one:second', 'one:third', 'one:fourth'].map((m) => c.request(m));
    expect((await slow).toString()).toBe('first');
    expect((await Promise.all(later)).map(String)).toEqual(['second', 'third', 'fourth']);
    expect(await aClosed).toEqual({ framesIn: 1, repliesOut: 1, code: null });
    expect(c.stats).toEqual({ reconnects: 1, resent: 3, goAways: 0, resetsAsEnd: 0 });
    expect(b.server.stats().counters.framesIn).toBe(3);
    await within(closing, 10_000, "A's close()");
  });

  it('without reconnect the same drain fails only the requests A never read', async () => {
    const [a] = await pair();
    const c = await connect({ port: a.port, timeout: 20_000 });
    clients.push(c);
    const slow = c.request('promise:300,first');
    await waitFor(() => a.server.stats().connections.inFlight === 1, 'A reading the first request');
    const draining = once(a.server, 'draining');
    const closing = a.server.close();
    await draining;
    const later = await Promise.all(['one:x', 'one:y'].map((m) => settle(c.request(m))));
    expect((await slow).toString()).toBe('first');
    expect(later.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['SHOAL_CONNECTION_CLOSED', 'SHOAL_CONNECTION_CLOSED']);
    await within(closing, 10_000, "A's close()");
    expect(a.server.stats().counters.framesIn).toBe(1); // the failed ones were never read
  });

  it('going-away frame: never taken as a reply; new requests go to B while A finishes the old ones, then the client leaves A', async () => {
    const [a, b] = await pair({ goAway: GOAWAY, drainTimeout: 20_000 });
    const c = await client(a, b, { goAway: GOAWAY });
    expect(c.isGoAway(Buffer.from('GOAWAY'))).toBe(true);
    expect(c.isGoAway(Buffer.from('GOAWAX'))).toBe(false);
    const slow = c.request('promise:300,on A');
    await waitFor(() => a.server.stats().connections.inFlight === 1, 'A reading the request');
    const aClosed = nextClose(a);
    const closing = a.server.close();
    await waitFor(() => c.stats.goAways === 1, 'the going-away frame');
    const onB = await c.request('one:on B');
    expect(onB.toString()).toBe('on B');
    expect((await slow).toString()).toBe('on A'); // the going-away frame did not answer it
    // The client ended A's connection once it was answered: A's drain finishes without a deadline.
    expect(await within(closing, 10_000, "A's close()")).toEqual({ connections: 1, drained: 1, destroyed: 0 });
    expect(await aClosed).toEqual({ framesIn: 1, repliesOut: 1, code: null });
    expect(c.unsolicited).toEqual([]);
    expect(c.stats).toMatchObject({ reconnects: 1, resent: 0, goAways: 1 });
    expect(b.server.stats().counters.framesIn).toBe(1);
  });

  it('a reset (server destroyed with requests read): failed without retry; re-sent with retry: idempotent', async () => {
    for (const retry of ['never', 'idempotent'] as const) {
      const [a, b] = await pair();
      const c = await client(a, b, { retry });
      const p = settle(c.request('promise:2000,slow'));
      await waitFor(() => a.server.stats().connections.inFlight === 1, 'A reading the request');
      void a.server.destroy();
      const r = await p;
      if (retry === 'never') {
        expect(r.ok ? 'answered' : r.error.code).toBe('SHOAL_CONNECTION_CLOSED');
        expect(c.stats.resent).toBe(0);
      } else {
        expect(r.ok && r.value.toString()).toBe('slow');
        expect(c.stats.resent).toBe(1);
      }
      // Either way the client goes on, on B.
      expect((await c.request('one:next')).toString()).toBe('next');
    }
  });

  it('a reset right behind a reply (read as an end of stream) is still a reset: the request the server read is not re-sent', async () => {
    // A stands in for a server destroyed with a request in flight just after answering the
    // one before: the reply and the RST leave in one tick, so both wait unread at the client.
    // libuv then reports the reset as an end of stream, which the client must not take for
    // the retry-safe FIN.
    const b = await start({ handler, workers: 0 });
    running.push(b);
    const both = lengthFrame('one:first').length + lengthFrame('one:second').length;
    const a = createServer((s) => {
      let got = 0;
      s.on('error', () => {});
      s.on('data', (chunk) => {
        got += chunk.length;
        if (got < both) return;
        s.write(lengthFrame('first'));
        s.resetAndDestroy();
      });
    });
    await new Promise<void>((r) => a.listen(0, '127.0.0.1', r));
    try {
      const port = (a.address() as AddressInfo).port;
      const c = await connect({ endpoints: [{ port }, { port: b.port }], timeout: 20_000, reconnect: true });
      clients.push(c);
      const [first, second] = await Promise.all([settle(c.request('one:first')), settle(c.request('one:second'))]);
      expect(first.ok && first.value.toString()).toBe('first');
      expect(second.ok ? 'answered' : second.error.message).toBe('connection reset by the server');
      expect(c.stats).toMatchObject({ resent: 0, resetsAsEnd: 1 });
      expect(b.server.stats().counters.framesIn).toBe(0);
      expect((await c.request('one:on B')).toString()).toBe('on B');
    } finally {
      a.close();
    }
  });

  it('after its own end (going away, all answered) a FIN behind a last push is not taken for a reset', async () => {
    // With our side ended, a FIN raises POLLHUP too, so it comes in the turn of the bytes before it.
    const a = createServer((s) => {
      s.on('error', () => {});
      s.once('data', () => s.write(Buffer.concat([GOAWAY, lengthFrame('answered')])));
      s.once('end', () => s.end(lengthFrame('a last push')));
    });
    await new Promise<void>((r) => a.listen(0, '127.0.0.1', r));
    try {
      const port = (a.address() as AddressInfo).port;
      const pushes: string[] = [];
      const c = await connect({ port, reconnect: true, goAway: GOAWAY, onUnsolicited: (f) => pushes.push(f.toString()) });
      clients.push(c);
      expect((await c.request('one:x')).toString()).toBe('answered');
      await waitFor(() => pushes.length === 1, 'the last push');
      await waitFor(() => c.socket.destroyed, 'the connection closed');
      expect(c.stats).toMatchObject({ goAways: 1, resetsAsEnd: 0 });
    } finally {
      a.close();
    }
  });

  it('idle timeout is an orderly close: the client reconnects for the next request without re-sending anything', async () => {
    const [a, b] = await pair({ idleTimeout: 300 });
    const c = await client(a, b);
    expect((await c.request('one:1')).toString()).toBe('1');
    const aClosed = nextClose(a);
    expect((await within(aClosed, 10_000, 'the idle close')).code).toBe('SHOAL_IDLE_TIMEOUT');
    expect((await c.request('one:2')).toString()).toBe('2');
    expect(c.stats).toMatchObject({ reconnects: 1, resent: 0 });
  });

  it('over TLS too: a destroy with a request read is a reset (of the TCP socket under TLS), so it is not re-sent; the client goes on, over TLS, on B', async () => {
    const TLS = `${FIXTURES}tls/`;
    const tls = { cert: `${TLS}server.crt`, key: `${TLS}server.key` };
    const clientTls = { ca: readFileSync(`${TLS}ca.crt`), servername: 'localhost' };
    const [a, b] = await pair({ tls });
    const c = await client(a, b, { tls: clientTls });
    const slow = settle(c.request('promise:2000,slow'));
    await waitFor(() => a.server.stats().connections.inFlight === 1, 'A reading the request');
    // A reset reads as ECONNRESET, or as an end in the turn of a read when it lands behind
    // bytes the client has not read yet (here, under load, the TLS 1.3 session tickets).
    const reset = new Promise<string>((r) => {
      c.socket.once('error', (e: NodeJS.ErrnoException) => r(e.code === 'ECONNRESET' ? 'reset' : (e.code ?? '')));
      c.socket.once('end', () => r(c.stats.resetsAsEnd === 1 ? 'reset' : 'FIN'));
    });
    void a.server.destroy();
    expect(await within(reset, 10_000, 'the reset')).toBe('reset');
    const r = await slow;
    expect(r.ok ? 'answered' : r.error.code).toBe('SHOAL_CONNECTION_CLOSED'); // outcome unknown: not re-sent
    expect((await c.request('one:on B')).toString()).toBe('on B');
  });

  it('a cut with replies still queued (drain deadline, everything read and answered) is a reset: a FIN would claim they were delivered', async () => {
    const [a] = await pair({ handler: `${FIXTURES}../../examples/echo/handler.js`, sendHighWater: 64 * 1024 * 1024, drainTimeout: 300 });
    const peer = netConnect({ host: '127.0.0.1', port: a.port });
    peer.on('error', () => {});
    await once(peer, 'connect');
    const request = lengthFrame(Buffer.alloc(64 * 1024, 0x61));
    // 16 MiB of requests, all read and answered at once; the peer reads none of the replies,
    // more than loopback's socket buffers hold: the rest stays queued in the server.
    for (let i = 0; i < 256; i++) peer.write(request);
    await waitFor(() => a.server.stats().counters.repliesOut === 256, 'every request answered');
    await waitFor(() => a.server.stats().connections.queuedBytes > 0, 'replies queued in the server');
    const closed = nextClose(a);
    const report = await within(a.server.close(), 10_000, 'close() at the drain deadline');
    expect(report.destroyed).toBe(1);
    const cut = await closed;
    expect(cut.framesIn).toBe(256);
    expect(cut.repliesOut).toBe(256); // all answered, not all delivered
    // Reset, not FIN: the server's socket is gone at once. A FIN would wait behind the queued
    // replies (FIN-WAIT-1). (The peer itself cannot always tell: Linux reports a reset that
    // arrives while received data is still unread as a plain end of stream.)
    const left = execFileSync('ss', ['-tnH', `sport = :${a.port}`], { encoding: 'utf8' }).trim();
    expect(left).toBe('');
    peer.destroy();
  });

  it('validates its options', async () => {
    await expect(connect({ port: 1, retry: 'idempotent' })).rejects.toThrow(/needs reconnect: true/);
    await expect(connect({ port: 1, retry: 'always' as never, reconnect: true })).rejects.toThrow(/retry must be/);
    await expect(connect({ endpoints: [] })).rejects.toThrow(/non-empty array/);
    await expect(connect({ port: 1, goAway: Buffer.from('GOAWAY') })).rejects.toThrow(/exactly one frame/);
  });
});
