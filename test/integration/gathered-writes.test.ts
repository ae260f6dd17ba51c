import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { amplifyReply, amplifyRequest } from '../helpers/amplify.js';
import { exchange, splitLengthFrames } from '../helpers/wire.js';

// The replies made while one read's frames are cut leave together: small ones are
// gathered into one buffer (src/connection.ts), larger ones are written between them.
// Whatever the mix, the peer must get every reply whole and in order, also when the
// read ends with a frame that closes the connection.

/** Sizes around the gathering bounds (1 KiB per reply, 16 KiB per write), in a fixed mix. */
function sizesOf(count: number): number[] {
  const mix = [0, 1, 17, 1019, 1020, 1021, 5000, 3, 900, 16 * 1024, 64, 2];
  return Array.from({ length: count }, (_, i) => mix[(i * 7) % mix.length]!);
}

// offload 'never': every message runs inline, inside the read that cut it; 'always': the
// replies come back from the workers, some while later frames of the read are being cut.
describe.each([
  { workers: 0, offload: 'auto' },
  { workers: 2, offload: 'never' },
  { workers: 2, offload: 'always' },
] as const)('replies of one read, workers: $workers, offload: $offload', ({ workers, offload }) => {
  let s: Running;
  beforeAll(async () => {
    s = await start({ handler: `${FIXTURES}amplify.js`, workers, offload, maxFrame: 64 * 1024 });
  });
  afterAll(() => s.close());

  it('600 requests in one write: every reply whole, in order', async () => {
    const sizes = sizesOf(600);
    const wire = await exchange(s.port, Buffer.concat(sizes.map((n, i) => amplifyRequest(n, i + 1))));
    const got = splitLengthFrames(wire);
    expect(got.map((g) => g.length)).toEqual(sizes);
    const wrong = got.findIndex((g, i) => !g.equals(amplifyReply(sizes[i]!, i + 1)));
    expect(wrong).toBe(-1);
  });

  it('large and small replies finishing out of order (async, 0-8 ms): each waits its turn and arrives whole', async () => {
    const sizes = sizesOf(120);
    const wire = await exchange(s.port, Buffer.concat(sizes.map((n, i) => amplifyRequest(n, i + 1, (i * 5) % 9))));
    const got = splitLengthFrames(wire);
    expect(got.map((g) => g.length)).toEqual(sizes);
    expect(got.findIndex((g, i) => !g.equals(amplifyReply(sizes[i]!, i + 1)))).toBe(-1);
  });

  it('a frame over maxFrame at the end of the read: the replies before it still arrive, then the close', async () => {
    // All small: still gathered when the bad frame ends the connection (they must go out before the FIN).
    const sizes = Array.from({ length: 40 }, (_, i) => (i * 13) % 50);
    const tooLarge = Buffer.alloc(4);
    tooLarge.writeUInt32BE(1024 * 1024, 0);
    const wire = await exchange(s.port, Buffer.concat([...sizes.map((n, i) => amplifyRequest(n, i + 1)), tooLarge]));
    const got = splitLengthFrames(wire);
    expect(got.map((g) => g.length)).toEqual(sizes);
    expect(got.findIndex((g, i) => !g.equals(amplifyReply(sizes[i]!, i + 1)))).toBe(-1);
  });
});
