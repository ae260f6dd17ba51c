import { lengthFrame } from './wire.js';

// The wire of test/fixtures/amplify.js: a request names a reply size and a seed, the
// reply is that many bytes of a sequence the seed fixes (checked byte for byte).

/** A length-framed request for a reply of `size` bytes from `seed` (`delayMs` later: an async reply). */
export function amplifyRequest(size: number, seed: number, delayMs?: number): Buffer {
  const b = Buffer.allocUnsafe(delayMs === undefined ? 8 : 12);
  b.writeUInt32BE(size, 0);
  b.writeUInt32BE(seed, 4);
  if (delayMs !== undefined) b.writeUInt32BE(delayMs, 8);
  return lengthFrame(b);
}

/** The reply amplify.js makes for (size, seed): byte i = (seed + i * 31) & 255. */
export function amplifyReply(size: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (seed + i * 31) & 255;
  return out;
}
