// The bench protocol (shared/bench-protocol.md), the load every shoal benchmark speaks.
//
// Request body: [u32 BE K][payload]
//   K = 0  reply = payload (echo)
//   K > 0  reply = dK where d1 = SHA-256(payload), d(i+1) = SHA-256(d(i))
// A body shorter than 4 bytes is a bad request.
import { createHash } from 'node:crypto';

export default function benchProtocol(frame) {
  if (frame.length < 4) {
    const err = new Error(`bench protocol body needs 4 bytes of K, got ${frame.length}`);
    err.code = 'SHOAL_BAD_REQUEST';
    throw err;
  }
  const k = frame.readUInt32BE(0);
  const payload = frame.subarray(4);
  if (k === 0) return payload;
  let digest = createHash('sha256').update(payload).digest();
  for (let i = 1; i < k; i++) digest = createHash('sha256').update(digest).digest();
  return digest;
}
