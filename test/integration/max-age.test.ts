import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { Connection, ShoalError } from '../../dist/src/index.js';
import { jitteredAge } from '../../dist/src/connection.js';
import { FIXTURES, start } from '../helpers/server.js';
import { rawConnect, within } from '../helpers/wire.js';

const closeOf = (server: import('../../dist/src/index.js').ShoalServer) =>
  once(server, 'connectionClose') as Promise<[Connection, ShoalError | null]>;

describe('max connection age (maxConnectionAge, maxConnectionAgeGrace)', () => {
  it('without a going-away frame: an orderly drain close; every request the server read was answered before the FIN', async () => {
    const s = await start({ handler: `${FIXTURES}multi.js`, workers: 2, maxConnectionAge: 400 });
    try {
      const c = await s.client();
      const closed = closeOf(s.server);
      // A closed loop, 4 in flight, until the server sends the connection away.
      let sent = 0;
      let answered = 0;
      let refused = 0;
      const loop = async (lane: number): Promise<void> => {
        for (;;) {
          const i = sent++;
          try {
            const reply = await c.request(`promise:5,l${lane}-${i}`);
            expect(reply.toString()).toBe(`l${lane}-${i}`);
            answered++;
          } catch (err) {
            expect((err as ShoalError).code).toBe('SHOAL_CONNECTION_CLOSED');
            refused++;
            return;
          }
        }
      };
      await within(Promise.all([0, 1, 2, 3].map(loop)), 15_000, 'the connection reaching its maximum age');
      const [conn, reason] = await within(closed, 5000, 'connectionClose');
      expect(reason?.code).toBe('SHOAL_MAX_CONNECTION_AGE');
      expect(answered).toBeGreaterThan(0);
      // Retry-safe: what the server read it answered; the refused ones it never read.
      expect(conn.counters.framesIn).toBe(conn.counters.repliesOut);
      expect(conn.counters.repliesOut).toBe(answered);
      expect(refused).toBe(4);
      expect(s.server.stats().budgetHits.maxConnectionAge).toBe(1);
      // The server goes on: a new connection is served.
      const again = await s.client();
      expect((await again.request('one:x')).toString()).toBe('x');
    } finally {
      await s.close();
    }
  });

  it('with a going-away frame: it is sent, the connection is still served until the peer leaves', async () => {
    const s = await start({ handler: `${FIXTURES}multi.js`, workers: 0, framing: { type: 'line' }, goAway: Buffer.from('BYE\n'), maxConnectionAge: 300 });
    try {
      const peer = await rawConnect(s.port);
      const bye = new Promise<void>((resolve) => peer.socket.on('data', () => peer.received().toString().includes('BYE\n') && resolve()));
      await within(bye, 10_000, 'the going-away frame');
      const conn = [...s.server.connections][0]!;
      expect(conn.state).toBe('goingAway');
      peer.socket.write('one:still served\n');
      await within(new Promise<void>((r) => peer.socket.on('data', () => peer.received().toString().includes('still served\n') && r())), 5000, 'a reply after the going-away frame');
      const closed = closeOf(s.server);
      peer.socket.end();
      const [, reason] = await within(closed, 5000, 'close after the peer left');
      expect(reason?.code).toBe('SHOAL_MAX_CONNECTION_AGE');
      expect(s.server.stats().budgetHits.maxConnectionAgeGrace).toBeUndefined();
    } finally {
      await s.close();
    }
  });

  it('a peer that ignores the going-away frame is destroyed after the grace', async () => {
    const s = await start({ handler: `${FIXTURES}multi.js`, workers: 0, framing: { type: 'line' }, goAway: Buffer.from('BYE\n'), maxConnectionAge: 200, maxConnectionAgeGrace: 300 });
    try {
      const stubborn = await rawConnect(s.port);
      const closed = closeOf(s.server);
      await within(stubborn.ended, 10_000, 'the stubborn peer being cut');
      const [, reason] = await within(closed, 5000, 'connectionClose');
      expect(reason?.code).toBe('SHOAL_MAX_CONNECTION_AGE');
      expect(stubborn.received().toString()).toBe('BYE\n');
      expect(s.server.stats().budgetHits.maxConnectionAgeGrace).toBe(1);
      stubborn.socket.destroy();
    } finally {
      await s.close();
    }
  });

  it('each connection gets its age +-10% (jitter), and the options are validated with flags', async () => {
    expect(jitteredAge(1000, 0)).toBe(900);
    expect(jitteredAge(1000, 0.5)).toBe(1000);
    expect(jitteredAge(1000, 0.999999)).toBe(1100);
    const ages = new Set(Array.from({ length: 50 }, () => jitteredAge(60_000)));
    expect(ages.size).toBeGreaterThan(1);
    for (const a of ages) expect(a >= 54_000 && a <= 66_000).toBe(true);
    const { resolveOptions } = await import('../../dist/src/options.js');
    const { startOptionsFromFlags } = await import('../../dist/src/cli/start.js');
    const o = resolveOptions(startOptionsFromFlags({ handler: '/tmp/h.js', 'max-connection-age': '5m', 'max-connection-age-grace': '30s' }).options);
    expect([o.maxConnectionAge, o.maxConnectionAgeGrace]).toEqual([300_000, 30_000]);
    expect(() => resolveOptions({ handler: '/tmp/h.js', maxConnectionAge: 1.5 })).toThrow(/maxConnectionAge must be an integer/);
  });
});
