import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { exchange, lengthFrame, splitLengthFrames } from '../helpers/wire.js';

// A reply written while the connection drains (the peer sent its FIN) lets the
// connection cut its next frame; when that frame's reply comes at once (inline), it
// must not do so by calling itself again: with thousands of frames left in the read
// buffer that nested a few stack frames per message until the stack overflowed, and
// the messages the overflow unwound were answered twice or never (a stuck connection).

describe('a long pipelined read finished while draining, workers: 0', () => {
  let s: Running;
  beforeAll(async () => {
    // A budget of 2 in flight: async messages pause reading with the rest of the read in the reader.
    s = await start({ handler: `${FIXTURES}multi.js`, workers: 0, codec: 'utf8', maxInFlightPerConnection: 2 });
  });
  afterAll(() => s.close());

  it('async messages, then 6,000 silent ones and a last reply in the same read, then FIN: every reply once, then the close', async () => {
    // 48 kB: one read on loopback, FIN right behind it. The async ones pause reading (the budget),
    // the FIN is taken in meanwhile, and the silent ones are then answered while the connection drains.
    const messages = ['promise:10,a', 'promise:10,b', 'promise:10,c', ...Array.from({ length: 6000 }, () => 'none'), 'one:after'];
    const wire = await exchange(s.port, Buffer.concat(messages.map(lengthFrame)), 10_000);
    expect(splitLengthFrames(wire).map(String)).toEqual(['a', 'b', 'c', 'after']);
    expect(s.server.stats().counters.lateReplies).toBe(0);
  });
});
