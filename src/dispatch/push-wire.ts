/**
 * Pushes (issue 12): what a message asks to send to other connections, or to do with
 * its own connection's groups, carried WITH that message's replies. The connection
 * that sent the message applies them when it releases the message's sequence number
 * (connection.ts deliver()), before writing the message's own replies: so a sender's
 * broadcasts reach every member in its send order, and a join is in effect before the
 * sender's next message is answered.
 *
 * A push body is a reply value, encoded like a reply (workers/runtime.ts encodeBody:
 * the codec, and the route id under routing) and framed by the connection's encoder,
 * once: the same framed bytes are written to every member.
 *
 * From a worker they travel in one R_PUSH record of the reply ring (reply-ring.ts),
 * just before the message's R_REPLY record. Writer (worker) and reader (main thread)
 * of that payload are both here. Each entry:
 *
 *   [u8 op][u8 1: has a group][u16 LE group bytes][u32 LE connection id][u32 LE body bytes][group utf8][body]
 *
 * The body is the framed reply; with a user framing (no encoder in the workers) the
 * bare body, framed by the main thread when it reads the record.
 */
import type { FrameEncoder, Framing } from '../framing/types.js';

/** Send the body to one connection (ctx.sendTo). */
export const P_SEND_TO = 1;
/** Send the body to a group's members, or to every connection (group null). */
export const P_BROADCAST = 2;
/** The sender's connection joins the group. */
export const P_JOIN = 3;
/** The sender's connection leaves the group. */
export const P_LEAVE = 4;
/** What a push does: 1 send to one connection, 2 broadcast, 3 join, 4 leave (the P_* constants). */
export type PushOp = 1 | 2 | 3 | 4;

/** Longest group name, in UTF-8 bytes (it travels in a u16 and is a Map key on the main thread). */
export const MAX_GROUP_BYTES = 1024;

const ENTRY_HEADER = 12;

/** A push as the runtime made it: `body` encoded by the codec, not framed (null for join/leave). */
export interface PushIntent {
  op: PushOp;
  /** The target of P_SEND_TO (0 otherwise). */
  connectionId: number;
  /** The group of P_BROADCAST (null: every connection), P_JOIN, P_LEAVE. */
  group: string | null;
  body: Uint8Array | null;
}

/** A push ready to apply on the main thread: `bytes` framed (null for join/leave). */
export interface Push {
  op: PushOp;
  /** The target of P_SEND_TO (0 otherwise). */
  connectionId: number;
  /** The group of P_BROADCAST (null: every connection), P_JOIN, P_LEAVE. */
  group: string | null;
  /** The framed body (null for join/leave). */
  bytes: Buffer | null;
}

/** The payload size of `pushes`; throws (before anything is written) if a body cannot be framed. */
export function pushesLength(pushes: readonly PushIntent[], framer: FrameEncoder): number {
  let n = 0;
  for (const p of pushes) {
    n += ENTRY_HEADER + (p.group === null ? 0 : Buffer.byteLength(p.group, 'utf8'));
    if (p.body !== null) n += framer.frameLength(p.body.length);
  }
  return n;
}

/** Write `pushes` at `offset` (room for pushesLength() bytes); returns the bytes written. */
export function writePushes(pushes: readonly PushIntent[], framer: FrameEncoder, buf: Uint8Array, offset: number): number {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let off = offset;
  for (const p of pushes) {
    const groupBytes = p.group === null ? 0 : b.write(p.group, off + ENTRY_HEADER, 'utf8');
    const bodyBytes = p.body === null ? 0 : framer.encodeInto(p.body, b, off + ENTRY_HEADER + groupBytes);
    b[off] = p.op;
    b[off + 1] = p.group === null ? 0 : 1; // an empty group name is a group too
    b.writeUInt16LE(groupBytes, off + 2);
    b.writeUInt32LE(p.connectionId >>> 0, off + 4);
    b.writeUInt32LE(bodyBytes, off + 8);
    off += ENTRY_HEADER + groupBytes + bodyBytes;
  }
  return off - offset;
}

/**
 * Read a push record (`length` bytes of `bytes` at `start`, which the ring reuses: copied
 * once here). `reframe`: the bodies are bare (a user framing) and are framed now.
 */
export function readPushes(bytes: Uint8Array, start: number, length: number, reframe: Framing | null): Push[] {
  const b = Buffer.allocUnsafe(length);
  b.set(bytes.subarray(start, start + length), 0);
  const out: Push[] = [];
  for (let off = 0; off < length; ) {
    const op = b[off]! as PushOp;
    const groupBytes = b.readUInt16LE(off + 2);
    const connectionId = b.readUInt32LE(off + 4);
    const bodyBytes = b.readUInt32LE(off + 8);
    const at = off + ENTRY_HEADER;
    const group = b[off + 1] === 0 ? null : b.toString('utf8', at, at + groupBytes);
    let body: Buffer | null = op === P_BROADCAST || op === P_SEND_TO ? b.subarray(at + groupBytes, at + groupBytes + bodyBytes) : null;
    if (body !== null && reframe !== null) body = frameOne(reframe, body);
    out.push({ op, connectionId, group, bytes: body });
    off = at + groupBytes + bodyBytes;
  }
  return out;
}

/** Frame the bodies of `intents` on the main thread (inline handlers, server.send). Throws over maxFrame. */
export function framePushes(framing: Framing, intents: readonly PushIntent[]): Push[] {
  const out: Push[] = [];
  for (const p of intents) out.push({ op: p.op, connectionId: p.connectionId, group: p.group, bytes: p.body === null ? null : frameOne(framing, p.body) });
  return out;
}

/** One body framed by `framing`'s encoder (throws over maxFrame). */
export function frameOne(framing: Framing, body: Uint8Array): Buffer {
  const enc = framing.encoder;
  const out = Buffer.allocUnsafe(enc.frameLength(body.length));
  enc.encodeInto(body, out, 0);
  return out;
}
