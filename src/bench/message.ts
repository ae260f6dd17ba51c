/**
 * The one request every connection sends, and the one reply it must get back.
 *
 * Every request of a run is the same, so every reply is the same: the expected
 * reply (a digest chain for bench-protocol K > 0) is computed once, and the reply
 * stream of a connection is that frame repeated. The driver verifies replies by
 * comparing whole chunks against it (see verifier.ts).
 */
import { createHash } from 'node:crypto';
import { InvalidOptionError } from '../errors.js';
import { createFraming, encodeFrame } from '../framing/index.js';
import type { BuiltinFramingOptions } from '../framing/types.js';
import type { BenchOptions } from './options.js';

/** Plain data: crosses to generator threads with postMessage. */
export interface MessageSpec {
  /** One request frame as it goes on the wire. */
  request: Uint8Array;
  /** One reply frame as it must come back on the wire. */
  reply: Uint8Array;
  /** The reply body a decoder cuts out of `reply` (used to resynchronise after a mismatch). */
  replyBody: Uint8Array;
  /** How to decode replies on the slow path. Raw framing is decoded as fixed-size echoes. */
  decodeFraming: BuiltinFramingOptions;
  maxFrame: number;
}

/** d1 = SHA-256(payload), d(i+1) = SHA-256(d(i)); returns dK (K >= 1). */
export function digestChain(payload: Uint8Array, k: number): Buffer {
  let d = createHash('sha256').update(payload).digest();
  for (let i = 1; i < k; i++) d = createHash('sha256').update(d).digest();
  return d;
}

/** The bench-protocol reply body for (K, payload). */
export function expectedBenchReply(k: number, payload: Uint8Array): Buffer {
  return k === 0 ? Buffer.from(payload) : digestChain(payload, k);
}

/** A deterministic printable payload (letters only: safe for line and delimiter framings). */
export function makePayload(size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = 97 + ((i * 7) % 26);
  return b;
}

export function buildMessage(o: Pick<BenchOptions, 'protocol' | 'iterations' | 'size' | 'framing' | 'maxFrame'>): MessageSpec {
  const payload = makePayload(o.size);
  const framing = createFraming(o.framing, Math.max(o.maxFrame, o.size + 64));
  let body: Buffer;
  let replyBody: Buffer;
  if (o.protocol === 'bench') {
    body = Buffer.allocUnsafe(4 + payload.length);
    body.writeUInt32BE(o.iterations, 0);
    payload.copy(body, 4);
    replyBody = expectedBenchReply(o.iterations, payload);
  } else {
    body = payload;
    replyBody = payload;
  }
  if (o.framing.type === 'delimiter' || o.framing.type === 'line') {
    const delim = o.framing.type === 'line' ? Buffer.from('\n') : Buffer.from(o.framing.delimiter as Uint8Array | string);
    if (payload.includes(delim)) throw new InvalidOptionError(`the payload would contain the delimiter ${JSON.stringify(delim.toString('latin1'))}`);
  }
  const request = encodeFrame(framing, body);
  // Replies of an echo come back through the server's encoder, which is the same framing.
  const reply = encodeFrame(framing, replyBody);
  const decodeFraming: BuiltinFramingOptions =
    o.framing.type === 'raw' ? { type: 'fixed', frameLength: Math.max(1, reply.length) } : o.framing;
  return { request, reply, replyBody, decodeFraming, maxFrame: Math.max(o.maxFrame, reply.length) };
}
