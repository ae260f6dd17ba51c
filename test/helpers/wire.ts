import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';

/** Poll `cond` every `every` ms until it is truthy; throws after `timeout` ms naming `what`. */
export async function waitFor<T>(cond: () => T | Promise<T>, what: string, timeout = 10_000, every = 10): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(every);
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Reject if `p` does not settle within `ms` (so a hang fails the test with a reason, not a timeout). */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** A plain TCP socket that records everything it receives and when the peer ends. */
export interface RawPeer {
  socket: Socket;
  received(): Buffer;
  /** Resolves when the server sent FIN ('end'); `closed` when the socket is fully closed. */
  ended: Promise<void>;
  closed: Promise<void>;
  hadError: () => Error | null;
}

export async function rawConnect(port: number): Promise<RawPeer> {
  const socket = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const chunks: Buffer[] = [];
  let error: Error | null = null;
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', (e) => (error = e));
  const ended = new Promise<void>((r) => socket.once('end', () => r()));
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return { socket, received: () => Buffer.concat(chunks), ended, closed, hadError: () => error };
}

/** Send `bytes`, half-close, and collect everything the server sends until it closes. */
export async function exchange(port: number, bytes: Uint8Array | Uint8Array[], timeout = 15_000): Promise<Buffer> {
  const peer = await rawConnect(port);
  for (const b of Array.isArray(bytes) ? bytes : [bytes]) peer.socket.write(b);
  peer.socket.end();
  try {
    await within(peer.closed, timeout, 'server closing the connection');
  } finally {
    peer.socket.destroy();
  }
  return peer.received();
}

/** [u32 BE length][body] frames, the default framing. */
export function lengthFrame(body: Uint8Array | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
  const out = Buffer.allocUnsafe(4 + b.length);
  out.writeUInt32BE(b.length, 0);
  b.copy(out, 4);
  return out;
}

/** Cut [u32 BE length][body] frames; throws on trailing bytes. */
/** Whole length-prefixed frames in `buf` so far (a frame still arriving at its end is not counted). */
export function countLengthFrames(buf: Buffer): number {
  let n = 0;
  for (let off = 0; buf.length - off >= 4; n++) {
    const next = off + 4 + buf.readUInt32BE(off);
    if (next > buf.length) break;
    off = next;
  }
  return n;
}

export function splitLengthFrames(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < buf.length) {
    if (buf.length - off < 4) throw new Error(`${buf.length - off} trailing bytes`);
    const n = buf.readUInt32BE(off);
    if (off + 4 + n > buf.length) throw new Error(`truncated frame of ${n} bytes at ${off}`);
    out.push(buf.subarray(off + 4, off + 4 + n));
    off += 4 + n;
  }
  return out;
}

/** The bench protocol's reply for K > 0: SHA-256 applied K times. */
export function shaChain(payload: Uint8Array, k: number): Buffer {
  let d = createHash('sha256').update(payload).digest();
  for (let i = 1; i < k; i++) d = createHash('sha256').update(d).digest();
  return d;
}

/** The bench protocol's reply body for (K, payload): the payload for K = 0, else shaChain. */
export function benchReply(k: number, payload: Uint8Array): Buffer {
  return k === 0 ? Buffer.from(payload) : shaChain(payload, k);
}

/** OS threads of this process (Linux): worker threads show up here until they are gone. */
export function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

/** A settled view of a promise: never rejects, so many can be awaited together. */
export function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: Error & { code?: string } }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: Error & { code?: string }) => ({ ok: false as const, error }),
  );
}
