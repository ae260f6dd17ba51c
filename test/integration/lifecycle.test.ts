import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { promisify } from 'node:util';
import { connect as netConnect } from 'node:net';
import { beforeAll, describe, expect, it } from 'vitest';
import { createServer } from '../../dist/src/index.js';
import type { DrainReport } from '../../dist/src/index.js';
import { EXAMPLES, FIXTURES, benchBody, start } from '../helpers/server.js';
import { exchange, lengthFrame, rawConnect, settle, shaChain, splitLengthFrames, threadCount, waitFor, within } from '../helpers/wire.js';

// Half-close, graceful close, going-away bytes, and the listen/close contract.

describe.each([0, 2])('half-close, workers: %i', (workers) => {
  it('a client that sends N requests then FIN gets all N replies, then the server FIN', async () => {
    const s = await start({ handler: EXAMPLES.bench, workers });
    try {
      const c = await s.client();
      const payload = Buffer.from('half-close');
      const ks = Array.from({ length: 40 }, (_, i) => (i % 4) * 300); // some take ~0.3 ms of CPU each
      const pending = ks.map((k) => c.request(benchBody(k, payload)));
      const ended = within(c.end(), 10_000, 'the server closing after the half-close');
      const got = await Promise.all(pending);
      await ended;
      got.forEach((r, i) => expect(r.equals(ks[i] === 0 ? payload : shaChain(payload, ks[i]!))).toBe(true));
    } finally {
      await s.close();
    }
  });

  it('on the wire: every reply precedes the FIN, and FIN follows without the client closing', async () => {
    const s = await start({ handler: EXAMPLES.echo, workers });
    try {
      const peer = await rawConnect(s.port);
      const msgs = Array.from({ length: 25 }, (_, i) => `m${i}`);
      peer.socket.end(Buffer.concat(msgs.map(lengthFrame)));
      await within(peer.ended, 10_000, 'FIN from the server');
      expect(splitLengthFrames(peer.received()).map(String)).toEqual(msgs);
      await within(peer.closed, 5000, 'the socket closing');
    } finally {
      await s.close();
    }
  });
});

describe.each([0, 2])('half-close with a partial frame at the end, workers: %i', (workers) => {
  it('the whole frames are answered, then FIN; the partial one is reported as SHOAL_FRAME_TRUNCATED', async () => {
    const s = await start({ handler: EXAMPLES.echo, workers });
    const codes: string[] = [];
    s.server.on('connectionError', (_c: unknown, e: { code: string }) => codes.push(e.code));
    try {
      const peer = await rawConnect(s.port);
      peer.socket.end(Buffer.concat([lengthFrame('a'), lengthFrame('b'), lengthFrame('never finished').subarray(0, 7)]));
      await within(peer.ended, 10_000, 'FIN from the server');
      expect(splitLengthFrames(peer.received()).map(String)).toEqual(['a', 'b']);
      await waitFor(() => codes.length > 0, 'the truncation being reported', 2000);
      expect(codes).toEqual(['SHOAL_FRAME_TRUNCATED']);
    } finally {
      await s.close();
    }
  });
});

describe.each([0, 2])('graceful close with heavy requests in flight, workers: %i', (workers) => {
  it('every request already received is answered, then each connection ends, then close() resolves', async () => {
    const s = await start({ handler: `${FIXTURES}multi.js`, workers, drainTimeout: 20_000 });
    const events: string[] = [];
    s.server.on('closing', () => events.push('closing'));
    s.server.on('close', () => events.push('close'));
    const clients = await Promise.all([s.client(), s.client(), s.client()]);
    // CPU-heavy messages (15 ms each, in a worker when there are workers) and slow async ones
    // (the only kind that can be in flight with workers: 0, where sync handlers finish as they are read).
    const msg = (ci: number, i: number): string => (i % 2 === 0 ? `spin:15` : `promise:150,c${ci}-${i}`);
    const want = (ci: number, i: number): string => (i % 2 === 0 ? 'spun-15' : `c${ci}-${i}`);
    const pending = clients.map((c, ci) => Promise.all(Array.from({ length: 8 }, (_, i) => settle(c.request(msg(ci, i))))));
    const ends = clients.map((c) => new Promise<void>((r) => c.socket.once('end', () => r())));
    // Wait until the server has read every request, then close while they are being processed.
    await waitFor(() => s.server.stats().counters.framesIn === 24, 'the server receiving all 24 requests');
    expect(s.server.stats().connections.inFlight).toBeGreaterThan(0);
    expect(s.server.ready).toBe(true);
    const closing = s.server.close();
    expect(s.server.ready).toBe(false); // readiness turns false the moment close() begins
    const report = (await within(closing, 20_000, 'close()')) as DrainReport;
    const results = await Promise.all(pending);
    results.forEach((rs, ci) =>
      expect(rs.map((r) => (r.ok ? r.value.toString() : r.error.code))).toEqual(Array.from({ length: 8 }, (_, i) => want(ci, i))),
    );
    // Every connection got its FIN (the server ended them, the clients did not).
    await within(Promise.all(ends), 1000, 'FIN on every connection');
    expect(report).toEqual({ connections: 3, drained: 3, destroyed: 0 });
    expect(events).toEqual(['closing', 'close']);
    expect(s.server.state).toBe('closed');
  });

  it('frames received but held back by maxInFlightPerConnection are still answered on close()', async () => {
    const s = await start({ handler: `${FIXTURES}multi.js`, workers, maxInFlightPerConnection: 2, drainTimeout: 20_000 });
    const c = await s.client();
    const msgs = Array.from({ length: 12 }, (_, i) => `promise:40,r${i}`);
    const pending = msgs.map((m) => settle(c.request(m)));
    const wire = msgs.reduce((n, m) => n + 4 + m.length, 0);
    // Every byte is in the server, but only 2 frames may be in flight: 10 wait in the connection's buffer.
    await waitFor(() => s.server.stats().counters.bytesIn === wire, 'the server reading every request');
    expect(s.server.stats().counters.framesIn).toBeLessThan(12);
    await within(s.server.close(), 20_000, 'close()');
    const got = await Promise.all(pending);
    expect(got.map((r) => (r.ok ? r.value.toString() : r.error.code))).toEqual(msgs.map((_, i) => `r${i}`));
  });

  it('a handler that never finishes cannot hold close() past the drain deadline', async () => {
    const s = await start({ handler: `${FIXTURES}multi.js`, workers, drainTimeout: 300 });
    const c = await s.client();
    const stuck = settle(c.request('promise:600000,never'));
    await waitFor(() => s.server.stats().connections.inFlight === 1, 'the request in flight');
    // Bounded: the drain deadline, then the pool's own bounded teardown; never the handler's 10 minutes.
    const report = await within(s.server.close(), 8000, 'close() with a stuck handler');
    expect(report).toEqual({ connections: 1, drained: 0, destroyed: 1 });
    const r = await stuck;
    expect(r.ok ? 'replied' : r.error.code).toBe('SHOAL_CONNECTION_CLOSED');
  });

  it('new connections are refused once close() has begun', async () => {
    const s = await start({ handler: EXAMPLES.echo, workers });
    const c = await s.client();
    await c.request('x');
    const closing = s.server.close();
    const refused = await new Promise<string>((resolve) => {
      const sock = netConnect({ host: '127.0.0.1', port: s.port });
      sock.once('connect', () => {
        // Accepted by the kernel backlog before close? Then it must be closed without service.
        sock.once('close', () => resolve('closed without service'));
        sock.write(lengthFrame('hello'));
        sock.once('data', () => resolve('served'));
      });
      sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
    });
    expect(refused).not.toBe('served');
    await within(closing, 10_000, 'close()');
  });
});

describe('shutdown deadline with a busy worker', () => {
  it('a worker spinning in a handler is terminated: close() resolves within its bound', async () => {
    const s = await start({ handler: `${FIXTURES}multi.js`, workers: 2, drainTimeout: 200 });
    const c = await s.client();
    const stuck = settle(c.request('spin:60000'));
    await waitFor(() => s.server.stats().dispatcher.framesInFlight === 1, 'the spin running in a worker');
    const report = await within(s.server.close(), 8000, 'close() with a worker spinning for a minute');
    expect(report.destroyed).toBe(1);
    expect((await stuck).ok).toBe(false);
  });
});

describe('close() and listen() contract', () => {
  it('close() is idempotent: every caller gets the same promise, one close event, same report', async () => {
    const s = await start({ handler: EXAMPLES.echo, workers: 2 });
    let closeEvents = 0;
    s.server.on('close', () => closeEvents++);
    const p1 = s.server.close();
    const p2 = s.server.close();
    expect(p2).toBe(p1);
    const [r1, r2] = await within(Promise.all([p1, p2]), 10_000, 'close()');
    expect(r2).toBe(r1);
    const p3 = s.server.close();
    expect(await within(p3, 1000, 'a third close()')).toBe(r1);
    expect(closeEvents).toBe(1);
    expect(s.server.state).toBe('closed');
  });

  it('listen() after close() rejects with SHOAL_SERVER_CLOSED; so does a second listen()', async () => {
    const s = await start({ handler: EXAMPLES.echo, workers: 0 });
    await expect(s.server.listen({ port: 0 })).rejects.toMatchObject({ code: 'SHOAL_SERVER_CLOSED' });
    await s.server.close();
    await expect(s.server.listen({ port: 0 })).rejects.toMatchObject({ code: 'SHOAL_SERVER_CLOSED' });
  });

  it('close() on a server that never listened resolves; listen() afterwards rejects', async () => {
    const server = createServer({ handler: EXAMPLES.echo, workers: 2 });
    await within(server.close(), 5000, 'close() of a server that never listened');
    await expect(server.listen({ port: 0 })).rejects.toMatchObject({ code: 'SHOAL_SERVER_CLOSED' });
  });

  it('close() during listen(): listen() rejects, nothing is left listening, close() resolves', async () => {
    const server = createServer({ handler: EXAMPLES.echo, workers: 2 });
    const listening = settle(server.listen({ host: '127.0.0.1', port: 0 }));
    const closed = server.close();
    const r = await within(listening, 10_000, 'listen()');
    expect(r.ok ? 'listened' : r.error.code).toBe('SHOAL_SERVER_CLOSED');
    await within(closed, 10_000, 'close()');
    expect(server.address()).toBeNull();
  });
});

describe.each([0, 2])('going-away bytes, workers: %i', (workers) => {
  it('a server with goAway sends them to every connection on close, keeps serving until the peer closes', async () => {
    const goAway = lengthFrame('GOAWAY');
    const s = await start({ handler: EXAMPLES.echo, workers, goAway, drainTimeout: 10_000 });
    const a = await s.client();
    const b = await s.client();
    expect((await a.request('before')).toString()).toBe('before');
    const closing = s.server.close();
    await waitFor(() => a.unsolicited.length > 0 && b.unsolicited.length > 0, 'the going-away frame on both connections', 5000);
    expect(a.unsolicited.map(String)).toEqual(['GOAWAY']);
    expect(b.unsolicited.map(String)).toEqual(['GOAWAY']);
    // Still served after the going-away frame: a cooperating client finishes its work, then leaves.
    expect((await a.request('after')).toString()).toBe('after');
    expect((await b.request('after too')).toString()).toBe('after too');
    await Promise.all([within(a.end(), 5000, 'a leaving'), within(b.end(), 5000, 'b leaving')]);
    const report = await within(closing, 5000, 'close() once the peers left');
    expect(report).toEqual({ connections: 2, drained: 2, destroyed: 0 });
  });

  it('a peer that ignores the going-away frame is destroyed at the drain deadline; close() still resolves', async () => {
    const s = await start({ handler: EXAMPLES.echo, workers, goAway: lengthFrame('GOAWAY'), drainTimeout: 300 });
    const peer = await rawConnect(s.port);
    const report = await within(s.server.close(), 5000, 'close() past the drain deadline');
    expect(report).toEqual({ connections: 1, drained: 0, destroyed: 1 });
    await within(Promise.race([peer.ended, peer.closed]), 2000, 'the stubborn peer being cut');
    expect(peer.received().toString('hex')).toBe(lengthFrame('GOAWAY').toString('hex'));
  });
});

describe('workers: 0 and workers: 2 give byte-identical replies', () => {
  it('the same request stream (bench protocol, bad requests under error-frame, multi-frame replies) gives the same bytes', async () => {
    const stream: Buffer[] = [];
    for (let i = 0; i < 300; i++) {
      const k = i % 7 === 0 ? 50 : i % 3;
      stream.push(lengthFrame(benchBody(k, `payload-${i}`)));
      if (i % 50 === 10) stream.push(lengthFrame(Buffer.from([1, 2]))); // < 4 bytes: SHOAL_BAD_REQUEST
      if (i % 50 === 20) stream.push(lengthFrame(Buffer.alloc(0)));
    }
    const benchWire = Buffer.concat(stream);
    const multiWire = Buffer.concat(
      ['one:a', 'many:x,y,z', 'none', 'throw:nope', 'send:s', 'promise:5,p', 'bad-request:why', 'reject:later', 'one:end'].map(lengthFrame),
    );
    const run = async (workers: number, handler: string, wire: Buffer): Promise<Buffer> => {
      const s = await start({ handler, workers, onHandlerError: 'error-frame' });
      try {
        return await exchange(s.port, wire);
      } finally {
        await s.close();
      }
    };
    const [b0, b2, m0, m2] = [
      await run(0, EXAMPLES.bench, benchWire),
      await run(2, EXAMPLES.bench, benchWire),
      await run(0, `${FIXTURES}multi.js`, multiWire),
      await run(2, `${FIXTURES}multi.js`, multiWire),
    ];
    // Sanity: the streams are what they should be, error frames included.
    const frames = splitLengthFrames(b0);
    expect(frames).toHaveLength(300 + 6 + 6);
    expect(frames.filter((f) => f.toString().includes('SHOAL_BAD_REQUEST'))).toHaveLength(12);
    expect(splitLengthFrames(m0).map(String)).toEqual([
      'a', 'x', 'y', 'z',
      JSON.stringify({ error: { code: 'SHOAL_HANDLER_ERROR', message: 'nope' } }),
      'first-s', 'second-s', 'last-s',
      'p',
      JSON.stringify({ error: { code: 'SHOAL_BAD_REQUEST', message: 'why' } }),
      JSON.stringify({ error: { code: 'SHOAL_HANDLER_ERROR', message: 'later' } }),
      'end',
    ]);
    expect(b2.toString('hex')).toBe(b0.toString('hex'));
    expect(m2.toString('hex')).toBe(m0.toString('hex'));
  });
});

describe('a closed pool lets go of its shared memory', () => {
  it('six servers closed with a doorbell wait pending (their last message killed the worker) hold no more than the first', async () => {
    // A pending Atomics.waitAsync holds its promise and the queue's SharedArrayBuffer until
    // notified; the pool's wait has no timeout, so close() must end it (each pool's queue is ~17 MiB).
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', `${FIXTURES}pool-release.mjs`, '6'], { timeout: 60_000 });
    const { first, last } = JSON.parse(stdout) as { first: number; last: number };
    expect(last - first).toBeLessThan(8 * 2 ** 20);
  });
});

describe('a handler module that fails to load', () => {
  let baseline = 0;
  beforeAll(async () => {
    // Warm up what a first server starts once per process (libuv threads, module loading),
    // so that any thread counted later belongs to a pool.
    const s = await start({ handler: EXAMPLES.echo, workers: 2 });
    await s.close();
    baseline = await waitFor(() => {
      const a = threadCount();
      return a > 0 ? a : null;
    }, 'a thread count');
  });

  it.each([
    ['a path that does not exist', `${FIXTURES}does-not-exist.js`],
    ['a module that throws at import', `${FIXTURES}load-throws.js`],
    ['a module that exports no handler', `${FIXTURES}load-no-handler.js`],
    ['a module whose setup() throws', `${FIXTURES}setup-throws.js`],
  ])('%s: listen() rejects with SHOAL_HANDLER_LOAD_FAILED and no threads are left running', async (_name, handler) => {
    for (const workers of [0, 2]) {
      const server = createServer({ handler, workers });
      const r = await within(settle(server.listen({ host: '127.0.0.1', port: 0 })), 15_000, 'listen()');
      expect(r.ok ? 'listened' : r.error.code).toBe('SHOAL_HANDLER_LOAD_FAILED');
      expect(server.address()).toBeNull();
      expect(server.state).toBe('closed');
      // The pool's threads are gone (not merely idle): the process is back to its thread count.
      await waitFor(() => threadCount() <= baseline, `threads back to ${baseline} (now ${threadCount()}), workers: ${workers}`, 5000);
      await within(server.close(), 5000, 'close() after a failed listen()');
    }
  });
});

describe.each([0, 2])('backpressure, workers: %i', (workers) => {
  it('a client that sends a lot and reads nothing gets paused; the server stops reading and its queue stays bounded; all flows when it reads', async () => {
    const HIGH = 64 * 1024;
    const s = await start({
      handler: EXAMPLES.echo,
      workers,
      sendHighWater: HIGH,
      sendLowWater: 16 * 1024,
      maxInFlightPerConnection: 32,
      sendTimeout: 0,
    });
    try {
      const sock = netConnect({ host: '127.0.0.1', port: s.port });
      await once(sock, 'connect');
      let sockError: Error | null = null;
      sock.on('error', (e) => (sockError = e));
      sock.pause(); // read nothing
      const FRAME = 16 * 1024;
      const N = 3072; // 48 MiB of requests, far beyond what the kernel buffers hold
      const body = Buffer.alloc(FRAME, 0x61);
      const frame = lengthFrame(body);
      for (let i = 0; i < N; i++) sock.write(frame);
      const total = N * frame.length;

      // Until the kernel buffers between us are full the server still makes progress; then it
      // must stay paused: bytes read stop growing while the client still has most of its data to send.
      const steady = await waitFor(
        async () => {
          const a = s.server.stats();
          await new Promise((r) => setTimeout(r, 250));
          const b = s.server.stats();
          const still = a.connections.paused === 1 && b.connections.paused === 1 && b.counters.bytesIn === a.counters.bytesIn;
          return still ? b : null;
        },
        'the server pausing the connection and reading no more',
        20_000,
        0,
      );
      const b = steady;
      expect(b.counters.bytesIn).toBeLessThan(total / 2);
      // Bounded: what is queued for the peer is the high water mark plus at most the replies in flight.
      const bound = HIGH + 32 * frame.length;
      expect(b.connections.queuedBytes).toBeLessThanOrEqual(bound);
      expect(b.dispatcher.pendingBytes).toBeLessThanOrEqual(32 * frame.length);

      // The client starts reading: everything arrives, the pause is lifted.
      let got = 0;
      sock.on('data', (c: Buffer) => (got += c.length));
      sock.resume();
      await waitFor(() => got >= total, 'every echo after the client reads again', 30_000, 20);
      expect(got).toBe(total);
      expect(sockError).toBeNull();
      await waitFor(() => s.server.stats().connections.paused === 0, 'the pause lifted');
      sock.end();
      await within(once(sock, 'close'), 5000, 'close');
    } finally {
      await s.close();
    }
  }, 60_000);
});
