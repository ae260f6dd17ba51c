// The bench protocol (shared/bench-protocol.md), the load every shoal benchmark speaks.
//
// Request body: [u32 BE K][payload]
//   K = 0  reply = payload (echo)
//   K > 0  reply = dK where d1 = SHA-256(payload), d(i+1) = SHA-256(d(i))
// A body shorter than 4 bytes is a bad request.
import { sha256Chain } from './sha256.js';

export default function benchProtocol(frame) {
  if (frame.length < 4) {
    const err = new Error(`bench protocol body needs 4 bytes of K, got ${frame.length}`);
    err.code = 'SHOAL_BAD_REQUEST';
    throw err;
  }
  const k = frame.readUInt32BE(0);
  const payload = frame.subarray(4);
  if (k === 0) return payload;
  // Pure JS, not node:crypto: see sha256.js for why (it does not scale across threads).
  return sha256Chain(payload, k);
}
