import { expect } from 'vitest';
import { FrameReader } from '../../dist/src/framing/index.js';
import type { Framing } from '../../dist/src/framing/index.js';
import { ShoalError } from '../../dist/src/errors.js';

export const FRAME_CODES = ['SHOAL_FRAME_TOO_LARGE', 'SHOAL_FRAME_TRUNCATED', 'SHOAL_FRAME_INVALID'] as const;

/**
 * Bytes from a table row: hex pairs, and "quoted" ASCII, in any order.
 *   bytes('00 0C "HELLO, WORLD"')  ->  <00 0c 48 45 4c 4c 4f 2c 20 57 4f 52 4c 44>
 * Inside quotes, \r \n \\ \" are the usual escapes.
 */
export function bytes(spec: string): Buffer {
  const out: number[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|([0-9a-fA-F]{2})|(\s+)/gy;
  let m: RegExpExecArray | null;
  let at = 0;
  while (at < spec.length) {
    re.lastIndex = at;
    m = re.exec(spec);
    if (m === null) throw new Error(`bad byte spec at ${at}: ${spec}`);
    at = re.lastIndex;
    if (m[1] !== undefined) {
      const s = m[1].replace(/\\(.)/g, (_, c: string) => ({ r: '\r', n: '\n' })[c] ?? c);
      out.push(...Buffer.from(s, 'latin1'));
    } else if (m[2] !== undefined) {
      out.push(parseInt(m[2], 16));
    }
  }
  return Buffer.from(out);
}

/** Readable form of frames for failure messages. */
export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * Every way the tables' inputs are fed: whole, split in two at every offset,
 * split in three at every pair of offsets (inputs up to 48 bytes), byte by byte.
 */
export function* chunkings(input: Buffer): Generator<Buffer[]> {
  const n = input.length;
  yield [input];
  for (let i = 1; i < n; i++) yield [input.subarray(0, i), input.subarray(i)];
  if (n <= 48) {
    for (let i = 1; i < n; i++) {
      for (let j = i + 1; j < n; j++) yield [input.subarray(0, i), input.subarray(i, j), input.subarray(j)];
    }
  }
  if (n > 1) yield Array.from({ length: n }, (_, i) => input.subarray(i, i + 1));
}

/** Cut `input` at the given offsets (any order, duplicates and out-of-range ignored). */
export function splitAt(input: Uint8Array, cuts: number[]): Buffer[] {
  const b = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const at = [...new Set(cuts.filter((c) => c > 0 && c < b.length))].sort((x, y) => x - y);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, b.length]) {
    out.push(b.subarray(prev, c));
    prev = c;
  }
  return out.filter((c) => c.length > 0);
}

export interface Decoded {
  frames: Buffer[];
  /** The ShoalError code that stopped decoding (from next() or end()), else null. */
  error: string | null;
  err: unknown;
}

/**
 * Feed chunks the way a connection does (push, then pull until null), then end().
 * Frames are copied only after everything is fed, so a frame view that a later
 * push or merge overwrote would show up as a mismatch.
 */
export function decode(framing: Framing, chunks: Uint8Array[]): Decoded {
  const reader = new FrameReader(framing.createDecoder());
  const views: Buffer[] = [];
  try {
    for (const c of chunks) {
      reader.push(Buffer.from(c.buffer, c.byteOffset, c.byteLength));
      for (let f = reader.next(); f !== null; f = reader.next()) views.push(f);
    }
    reader.end();
  } catch (err) {
    if (!(err instanceof ShoalError)) throw err;
    return { frames: views.map((v) => Buffer.from(v)), error: err.code, err };
  }
  return { frames: views.map((v) => Buffer.from(v)), error: null, err: null };
}

/**
 * A BEFORE/AFTER table row: `before` fed in every chunking gives exactly `after`,
 * then end() finds nothing left over. Three copies back to back give `after` three times.
 */
export function expectTable(framing: Framing, before: Buffer, after: Buffer[]): void {
  for (const input of [before, Buffer.concat([before, before, before])]) {
    const want = input === before ? after : [...after, ...after, ...after];
    for (const chunks of chunkings(input)) {
      const got = decode(framing, chunks);
      const where = `chunks ${chunks.map((c) => c.length).join('+')}`;
      expect(got.error, `${where}: ${String(got.err)}`).toBeNull();
      expect(got.frames.map(hex), where).toEqual(want.map(hex));
    }
  }
}

/** Run fn, expect a ShoalError with `code` (and the given own properties); returns it. */
export function expectShoal(fn: () => unknown, code: string, props: Record<string, unknown> = {}): ShoalError {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `expected ${code}`).toBeInstanceOf(ShoalError);
  const e = thrown as ShoalError;
  expect(e.code).toBe(code);
  for (const [k, v] of Object.entries(props)) expect((e as unknown as Record<string, unknown>)[k], k).toBe(v);
  return e;
}
