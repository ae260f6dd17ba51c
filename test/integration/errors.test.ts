import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { rawConnect, settle, waitFor, within } from '../helpers/wire.js';
import type { Connection, ShoalError } from '../../dist/src/index.js';

// What goes wrong, and that it stays contained: bad frames, handlers that
// throw (under each policy), workers that die.

const MULTI = `${FIXTURES}multi.js`;

describe.each([0, 2])('an oversized frame, workers: %i', (workers) => {
  let s: Running;
  const errors: { id: number; code: string; length?: number; max?: number }[] = [];
  const closes: { id: number; code: string | null }[] = [];
  beforeAll(async () => {
    s = await start({ handler: MULTI, workers, maxFrame: 1024 });
    s.server.on('connectionError', (conn: Connection, err: ShoalError & { length?: number; max?: number }) =>
      errors.push({ id: conn.id, code: err.code, length: err.length, max: err.max }),
    );
    s.server.on('connectionClose', (conn: Connection, err: ShoalError | null) => closes.push({ id: conn.id, code: err?.code ?? null }));
  });
  afterAll(() => s.close());

  it('closes that connection with SHOAL_FRAME_TOO_LARGE after answering what came before; another connection keeps being served', async () => {
    const other = await s.client();
    expect((await other.request('one:before')).toString()).toBe('one:before'.slice(4));

    const bad = await rawConnect(s.port);
    const badId = await waitFor(() => [...s.server.connections].find((c) => c.remotePort === bad.socket.localPort)?.id, 'the bad connection');
    // A whole good frame, then a header claiming 1 MiB (only the header: the server must not wait for the body).
    const good = Buffer.from('one:answered');
    const head = Buffer.alloc(4);
    head.writeUInt32BE(1024 * 1024, 0);
    bad.socket.write(Buffer.concat([Buffer.from([0, 0, 0, good.length]), good, head]));
    // FIN from the server (the body was never sent: the header alone must be enough).
    await within(bad.ended, 5000, 'the server ending the connection that sent an oversized frame');
    bad.socket.end();
    await within(bad.closed, 5000, 'the connection closing once both sides ended');
    expect(bad.received().toString('hex')).toBe(Buffer.concat([Buffer.from([0, 0, 0, 8]), Buffer.from('answered')]).toString('hex'));

    expect(errors.filter((e) => e.id === badId)).toEqual([{ id: badId, code: 'SHOAL_FRAME_TOO_LARGE', length: expect.any(Number), max: 1024 }]);
    expect(errors.find((e) => e.id === badId)!.length).toBeGreaterThan(1024);
    await waitFor(() => closes.some((c) => c.id === badId), 'connectionClose for the bad connection');
    expect(closes.find((c) => c.id === badId)!.code).toBe('SHOAL_FRAME_TOO_LARGE');

    // The other connection was never touched.
    const after = await Promise.all(Array.from({ length: 20 }, (_, i) => other.request(`one:after-${i}`)));
    expect(after.map(String)).toEqual(Array.from({ length: 20 }, (_, i) => `after-${i}`));
    expect(errors.every((e) => e.id === badId)).toBe(true);
    expect(s.server.stats().counters.frameErrors).toBe(1);
  });
});

describe.each([0, 2])('a peer that vanishes with requests in flight, workers: %i', (workers) => {
  it('its late replies are dropped and counted; the server goes on serving others', async () => {
    const s = await start({ handler: MULTI, workers, codec: 'utf8' });
    try {
      const other = await s.client();
      const gone = await rawConnect(s.port);
      const frame = (m: string) => Buffer.concat([Buffer.from([0, 0, 0, Buffer.byteLength(m)]), Buffer.from(m)]);
      gone.socket.write(Buffer.concat(Array.from({ length: 5 }, (_, i) => frame(`promise:100,late-${i}`))));
      await waitFor(() => s.server.stats().connections.inFlight === 5, 'five requests in flight');
      gone.socket.resetAndDestroy(); // RST: the write side of the server now has nowhere to go
      await waitFor(() => s.server.stats().connections.active === 1, 'the server dropping the reset connection');
      // The five replies come back ~100 ms after they were sent, to a connection that is gone.
      await waitFor(() => s.server.stats().counters.lateReplies >= 5, 'the five late replies counted', 3000).catch(() => {});
      expect(s.server.stats().counters.lateReplies).toBe(5);
      expect((await other.request('one:unaffected')).toString()).toBe('unaffected');
    } finally {
      await s.close();
    }
  });
});

describe.each([0, 2])('an overlong line, workers: %i', (workers) => {
  it('line framing: maxFrame bytes without a newline close that connection with SHOAL_FRAME_TOO_LARGE', async () => {
    const s = await start({ handler: MULTI, workers, framing: { type: 'line' }, maxFrame: 100 });
    const codes: string[] = [];
    s.server.on('connectionError', (_c: Connection, e: ShoalError) => codes.push(e.code));
    try {
      const other = await s.client({ framing: { type: 'line' } });
      const bad = await rawConnect(s.port);
      bad.socket.write('one:ok\n' + 'x'.repeat(300)); // never a newline after the first line
      await within(bad.ended, 5000, 'FIN after an overlong line');
      expect(bad.received().toString()).toBe('ok\n');
      expect(codes).toEqual(['SHOAL_FRAME_TOO_LARGE']);
      bad.socket.destroy();
      expect((await other.request('one:fine')).toString()).toBe('fine');
    } finally {
      await s.close();
    }
  });
});

describe.each([0, 2])('a handler that throws, workers: %i', (workers) => {
  it('policy close (default): earlier replies are written, then the connection ends; later requests are not answered', async () => {
    const s = await start({ handler: MULTI, workers, codec: 'utf8' });
    const handlerErrors: { code: string; message: string; conn: number }[] = [];
    s.server.on('handlerError', (e: { code: string; message: string }, conn: number) => handlerErrors.push({ ...e, conn }));
    try {
      const c = await s.client();
      const other = await s.client();
      const cId = await waitFor(() => [...s.server.connections].find((x) => x.remotePort === c.socket.localPort)?.id, 'server side of c');
      const results = await Promise.all([
        settle(c.request('one:first')),
        settle(c.request('promise:20,second')),
        settle(c.request('throw:kaboom')),
        settle(c.request('one:never')),
      ]);
      expect(results.slice(0, 2).map((r) => (r.ok ? r.value.toString() : r.error.code))).toEqual(['first', 'second']);
      expect(results.slice(2).map((r) => (r.ok ? `reply ${r.value.toString()}` : r.error.code))).toEqual([
        'SHOAL_CONNECTION_CLOSED',
        'SHOAL_CONNECTION_CLOSED',
      ]);
      expect(handlerErrors).toHaveLength(1);
      expect(handlerErrors[0]).toMatchObject({ code: 'SHOAL_HANDLER_ERROR', message: expect.stringContaining('kaboom') });
      // The other connection is unaffected.
      expect((await other.request('one:still here')).toString()).toBe('still here');
      // The error names the connection it happened on, and that connection is gone.
      expect(handlerErrors[0]!.conn).toBe(cId);
      expect([...s.server.connections].map((x) => x.id)).not.toContain(cId);
    } finally {
      await s.close();
    }
  });

  it('policy error-frame: a JSON error reply in place of the reply, and the connection goes on', async () => {
    const s = await start({ handler: MULTI, workers, codec: 'utf8', onHandlerError: 'error-frame' });
    try {
      const c = await s.client();
      const got = await Promise.all([
        c.request('one:a'),
        c.request('throw:sync failure'),
        c.request('reject:async failure'),
        c.request('bad-request:malformed'),
        c.request('one:b'),
      ]);
      expect(got[0]!.toString()).toBe('a');
      expect(JSON.parse(got[1]!.toString())).toEqual({ error: { code: 'SHOAL_HANDLER_ERROR', message: 'sync failure' } });
      expect(JSON.parse(got[2]!.toString())).toEqual({ error: { code: 'SHOAL_HANDLER_ERROR', message: 'async failure' } });
      expect(JSON.parse(got[3]!.toString())).toEqual({ error: { code: 'SHOAL_BAD_REQUEST', message: 'malformed' } });
      expect(got[4]!.toString()).toBe('b');
      expect((await c.request('one:c')).toString()).toBe('c');
      expect(s.server.stats().counters.handlerErrors).toBe(3);
    } finally {
      await s.close();
    }
  });

  it('policy error-frame: a reply that cannot be packed or framed is a handler error too', async () => {
    const s = await start({ handler: MULTI, workers, codec: 'utf8', onHandlerError: 'error-frame', maxFrame: 1024 });
    try {
      const c = await s.client();
      const [num, big, fits, after] = await Promise.all([
        c.request('number'), // 42 under the utf8 codec
        c.request('big:5000'), // a reply over maxFrame: the encoder enforces the same maximum
        c.request('big:1000'),
        c.request('one:after'),
      ]);
      expect(JSON.parse(num!.toString())).toMatchObject({ error: { code: 'SHOAL_HANDLER_ERROR' } });
      expect(JSON.parse(big!.toString())).toMatchObject({ error: { code: 'SHOAL_FRAME_TOO_LARGE' } });
      expect(fits!.equals(Buffer.alloc(1000, 0x62))).toBe(true);
      expect(after!.toString()).toBe('after');
    } finally {
      await s.close();
    }
  });

  it('policy drop: no reply for the failed message, later ones arrive in order, the connection goes on', async () => {
    const s = await start({ handler: MULTI, workers, codec: 'utf8', onHandlerError: 'drop' });
    const handlerErrors: string[] = [];
    s.server.on('handlerError', (e: { code: string }) => handlerErrors.push(e.code));
    try {
      const peer = await rawConnect(s.port);
      const frame = (m: string) => Buffer.concat([Buffer.from([0, 0, 0, Buffer.byteLength(m)]), Buffer.from(m)]);
      const msgs = ['one:1', 'throw:x', 'one:2', 'reject:y', 'promise:10,3', 'throw:z', 'one:4'];
      peer.socket.write(Buffer.concat(msgs.map(frame)));
      const want = Buffer.concat(['1', '2', '3', '4'].map(frame));
      await waitFor(() => peer.received().length >= want.length, 'the replies of the messages that did not fail', 10_000);
      expect(peer.received().toString()).toBe(want.toString());
      expect(handlerErrors).toEqual(['SHOAL_HANDLER_ERROR', 'SHOAL_HANDLER_ERROR', 'SHOAL_HANDLER_ERROR']);
      // Still open and served.
      peer.socket.write(frame('one:5'));
      await waitFor(() => peer.received().length >= want.length + 5, 'a reply after the dropped ones');
      expect(peer.received().subarray(want.length).toString()).toBe(frame('5').toString());
      peer.socket.end();
      await within(peer.closed, 5000, 'close after FIN');
    } finally {
      await s.close();
    }
  });
});

describe('a handler that kills its worker (process.exit in the worker), workers: 2', () => {
  let s: Running;
  let dir: string;
  const failures: { code: string; messages: number }[] = [];
  const setups = (): string[] =>
    readFileSync(join(dir, 'log'), 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('setup '))
      .map((l) => l.split(' ')[1]!);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'shoal-kill-'));
    process.env.SHOAL_TEST_LOG = join(dir, 'log');
    // offload 'always': a handler that may process.exit() must never run on the main thread
    // (with 'auto' its cheap messages would; README says so).
    s = await start({ handler: `${FIXTURES}setup-log.js`, workers: 2, onHandlerError: 'error-frame', offload: 'always' });
    s.server.on('workerFailure', (e: { code: string }, messages: number) => failures.push({ code: e.code, messages }));
  });
  afterAll(async () => {
    await s.close();
    delete process.env.SHOAL_TEST_LOG;
    rmSync(dir, { recursive: true, force: true });
  });

  it('the server keeps serving other connections and replaces the worker', async () => {
    const original = setups();
    expect(original).toHaveLength(2);
    const bystander = await s.client();
    const before = await Promise.all(Array.from({ length: 100 }, () => bystander.request('who')));
    for (const r of before) expect(original).toContain(r.toString().split(':')[0]);

    const killer = await s.client();
    const died = await killer.request('exit');
    // error-frame policy: the message the dead worker held gets an error reply; its connection goes on.
    expect(JSON.parse(died.toString())).toMatchObject({ error: { code: 'SHOAL_WORKER_DIED' } });
    expect(failures.length).toBeGreaterThanOrEqual(1);
    expect(failures[0]!.code).toBe('SHOAL_WORKER_DIED');
    expect((await killer.request('who')).toString()).toMatch(/^\d+:1$/);

    // The bystander keeps being served; keep asking until the replacement worker answers.
    await waitFor(
      async () => {
        const rs = await Promise.all(Array.from({ length: 64 }, () => bystander.request('who')));
        let fresh = false;
        for (const r of rs) {
          const [thread, count] = r.toString().split(':');
          expect(count).toBe('1'); // every thread that serves has run setup() exactly once
          if (!original.includes(thread!)) fresh = true;
        }
        return fresh;
      },
      'a reply from a replacement worker',
      10_000,
    );
    // Exactly one new worker was set up, and the pool is back to two threads.
    const now = setups();
    expect(now).toHaveLength(3);
    expect(original.filter((t) => now.includes(t))).toHaveLength(2);
    expect(s.server.stats().dispatcher.workers).toBe(2);
    expect(s.server.state).toBe('listening');
  });

  it('frames of other connections batched with the fatal one are not lost: every one is answered, in order', async () => {
    // offload 'always': the fatal message must reach a worker (it process.exit()s).
    const s2 = await start({ handler: MULTI, workers: 2, codec: 'utf8', offload: 'always' });
    try {
      const bystander = await s2.client();
      for (let round = 0; round < 3; round++) {
        const killer = await s2.client();
        // Same tick: the bystander's pipeline and the fatal message reach the dispatcher together,
        // so they may share a batch (batches mix connections).
        const mine = Array.from({ length: 300 }, (_, i) => bystander.request(`one:r${round}-${i}`));
        const fatal = settle(killer.request('exit'));
        const more = Array.from({ length: 300 }, (_, i) => bystander.request(`one:r${round}-${300 + i}`));
        const got = await within(Promise.all([...mine, ...more]), 15_000, `the bystander's replies, round ${round}`);
        expect(got.map(String)).toEqual(Array.from({ length: 600 }, (_, i) => `r${round}-${i}`));
        const f = await fatal;
        expect(f.ok ? `reply ${f.value.toString()}` : f.error.code).toBe('SHOAL_CONNECTION_CLOSED');
      }
      expect(s2.server.stats().counters.workerFailures).toBeGreaterThanOrEqual(3);
    } finally {
      await s2.close();
    }
  });

  it('messages waiting on the main thread are still sent when every message out killed its worker', async () => {
    // One worker: the shared queue holds two messages and the rest wait in the fair queue.
    // Each 'exit' kills the worker that runs it and fails alone (error-frame); when the last
    // message out has failed no reply is left to come, and what waits must still move on.
    const s2 = await start({ handler: MULTI, workers: 1, codec: 'utf8', offload: 'always', onHandlerError: 'error-frame' });
    try {
      const c = await s2.client();
      const fatal = Array.from({ length: 6 }, () => c.request('exit'));
      const after = c.request('one:after');
      const got = await within(Promise.all([...fatal, after]), 20_000, 'every reply after six worker deaths');
      for (const r of got.slice(0, 6)) expect(JSON.parse(r.toString())).toMatchObject({ error: { code: 'SHOAL_WORKER_DIED' } });
      expect(got[6]!.toString()).toBe('after');
      expect(s2.server.stats().counters.workerFailures).toBe(6);
    } finally {
      await s2.close();
    }
  });

  it('under the close policy only the connection whose message died is closed', async () => {
    // offload 'always': the fatal message must reach a worker (it process.exit()s).
    const s2 = await start({ handler: MULTI, workers: 2, codec: 'utf8', offload: 'always' });
    try {
      const bystander = await s2.client();
      // The bystander has nothing in flight when the worker dies (batches mix connections).
      expect((await bystander.request('one:x')).toString()).toBe('x');
      const killer = await s2.client();
      const r = await settle(killer.request('exit'));
      expect(r.ok ? 'replied' : r.error.code).toBe('SHOAL_CONNECTION_CLOSED');
      const after = await Promise.all(Array.from({ length: 50 }, (_, i) => bystander.request(`one:${i}`)));
      expect(after.map(String)).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
      const fresh = await s2.client();
      expect((await fresh.request('one:new connection')).toString()).toBe('new connection');
    } finally {
      await s2.close();
    }
  });
});
