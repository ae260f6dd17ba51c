import { afterEach, describe, expect, it, vi } from 'vitest';
import { FrameReader, createFraming, encodeFrame } from '../../dist/src/framing/index.js';
import type { FrameDecoder } from '../../dist/src/framing/index.js';
import { ShoalError } from '../../dist/src/errors.js';
import { expectShoal } from './helpers.js';

/** A decoder driven by a function, recording the bytes available at each call. */
function fake(fn: (d: FrameDecoder, buf: Buffer, offset: number) => Buffer | null): FrameDecoder & { calls: number[] } {
  const d = {
    consumed: 0,
    needed: 0,
    calls: [] as number[],
    decode(buf: Buffer, offset: number): Buffer | null {
      d.calls.push(buf.length - offset);
      return fn(d, buf, offset);
    },
  };
  return d;
}

/** Frames of exactly n bytes, written as a plain FrameDecoder. */
const fixedN = (n: number) =>
  fake((d, buf, off) => {
    if (buf.length - off < n) {
      d.needed = n;
      return null;
    }
    d.consumed = n;
    return buf.subarray(off, off + n);
  });

describe('FrameReader: the decoder contract', () => {
  it('rejects a frame returned without consuming (SHOAL_FRAME_INVALID) instead of looping', () => {
    const d = fake(() => Buffer.from('x')); // consumed stays 0
    const r = new FrameReader(d);
    r.push(Buffer.from('abc'));
    const e = expectShoal(() => r.next(), 'SHOAL_FRAME_INVALID');
    expect(e.message).toContain('consumed 0 of 3');
    expect(d.calls).toEqual([3]);
  });

  it.each([
    ['more than available', 4],
    ['a negative count', -1],
    ['NaN', Number.NaN],
  ])('rejects consumed = %s', (_n, consumed) => {
    const r = new FrameReader(
      fake((d, buf) => {
        d.consumed = consumed;
        return buf;
      }),
    );
    r.push(Buffer.from('abc'));
    expectShoal(() => r.next(), 'SHOAL_FRAME_INVALID');
  });

  it('does not call the decoder again until `needed` bytes are buffered', () => {
    const d = fixedN(10);
    const r = new FrameReader(d);
    const frames: string[] = [];
    for (const ch of 'abcdefghijklmnopqrstu') {
      r.push(Buffer.from(ch));
      for (let f = r.next(); f !== null; f = r.next()) frames.push(String(f));
    }
    expect(frames).toEqual(['abcdefghij', 'klmnopqrst']);
    // One look at the first byte, one when 10 are in; same again; one for the 'u'.
    expect(d.calls).toEqual([1, 10, 1, 10, 1]);
    expect(r.buffered).toBe(1);
  });

  it('a decoder that under-reports `needed` still gets one more byte before the next call', () => {
    const d = fake((dec, buf, off) => {
      dec.needed = 0;
      if (buf.length - off < 3) return null;
      dec.consumed = 3;
      return buf.subarray(off, off + 3);
    });
    const r = new FrameReader(d);
    for (const ch of 'abc') {
      r.push(Buffer.from(ch));
      expect(r.next() === null).toBe(ch !== 'c');
    }
    expect(d.calls).toEqual([1, 2, 3]);
  });

  it('passes the decoder’s error through unchanged, and keeps the bytes', () => {
    const boom = new ShoalError('SHOAL_FRAME_INVALID', 'boom');
    const r = new FrameReader(
      fake(() => {
        throw boom;
      }),
    );
    r.push(Buffer.from('abc'));
    expect(() => r.next()).toThrow(boom);
    expect(r.buffered).toBe(3);
  });
});

describe('FrameReader: buffering', () => {
  it('ignores empty chunks', () => {
    const d = fixedN(2);
    const r = new FrameReader(d);
    r.push(Buffer.alloc(0));
    expect(r.buffered).toBe(0);
    expect(r.next()).toBeNull();
    expect(d.calls).toEqual([]);
  });

  it('counts buffered bytes across the current buffer and waiting chunks', () => {
    const r = new FrameReader(fixedN(4));
    r.push(Buffer.from('ab'));
    expect(r.next()).toBeNull();
    r.push(Buffer.from('c'));
    r.push(Buffer.from('defgh'));
    expect(r.buffered).toBe(8);
    expect(String(r.next())).toBe('abcd');
    expect(r.buffered).toBe(4);
    expect(String(r.next())).toBe('efgh');
    expect(r.buffered).toBe(0);
    expect(r.next()).toBeNull();
  });

  it('a chunk that waited behind another is used in place once that one is cut, not copied', () => {
    const r = new FrameReader(createFraming({ type: 'line' }, 64).createDecoder());
    const first = Buffer.alloc(4, 0x61);
    first[3] = 0x0a;
    const second = Buffer.alloc(3, 0x62);
    second[2] = 0x0a;
    r.push(first);
    r.push(second);
    const a = r.next()!;
    const b = r.next()!;
    expect([String(a), String(b)]).toEqual(['aaa', 'bb']);
    expect(a.buffer).toBe(first.buffer);
    expect(b.buffer).toBe(second.buffer);
    expect(b.byteOffset).toBe(second.byteOffset);
  });

  it('is pull-based: a caller may stop mid-chunk, push more, and resume in order', () => {
    const f = createFraming({ type: 'line' }, 64);
    const r = new FrameReader(f.createDecoder());
    r.push(Buffer.from('1\n2\n3\n4'));
    expect(String(r.next())).toBe('1');
    r.push(Buffer.from('\n5\n6'));
    r.push(Buffer.from('\n'));
    const rest: string[] = [];
    for (let x = r.next(); x !== null; x = r.next()) rest.push(String(x));
    expect(rest).toEqual(['2', '3', '4', '5', '6']);
    r.end();
  });

  it('frames already handed out stay intact while later bytes are merged', () => {
    const f = createFraming({ type: 'line' }, 1 << 16);
    const r = new FrameReader(f.createDecoder());
    const held: Array<[Buffer, string]> = [];
    for (let i = 0; i < 200; i++) {
      const s = `line-${i}-${'x'.repeat(i * 7)}`;
      // Each line arrives in three pieces, the last carrying the start of nothing else.
      for (const piece of [s.slice(0, 3), s.slice(3, 10), `${s.slice(10)}\n`]) {
        r.push(Buffer.from(piece));
        for (let x = r.next(); x !== null; x = r.next()) held.push([x, s]);
      }
    }
    expect(held).toHaveLength(200);
    for (const [view, want] of held) expect(String(view)).toBe(want);
  });
});

describe('FrameReader: end()', () => {
  it('with nothing left it does not throw, twice', () => {
    const r = new FrameReader(fixedN(2));
    r.end();
    r.push(Buffer.from('ab'));
    expect(String(r.next())).toBe('ab');
    r.end();
    r.end();
  });

  it('with leftover bytes, including chunks not yet merged, it is SHOAL_FRAME_TRUNCATED', () => {
    const r = new FrameReader(fixedN(10));
    r.push(Buffer.from('abc'));
    expect(r.next()).toBeNull();
    r.push(Buffer.from('de'));
    expectShoal(() => r.end(), 'SHOAL_FRAME_TRUNCATED', { buffered: 5 });
    expect(r.buffered).toBe(0);
    r.end(); // the leftover was discarded: once only
  });
});

/**
 * Count the bytes the reader allocates to merge chunks. Buffer.concat may allocate
 * through Buffer.allocUnsafe; those calls are counted once, as the concat.
 */
function spyMerges(): { bytes: () => number; count: () => number } {
  const sizes: number[] = [];
  let inConcat = 0;
  const concat = Buffer.concat.bind(Buffer);
  const allocUnsafe = Buffer.allocUnsafe.bind(Buffer);
  const allocUnsafeSlow = Buffer.allocUnsafeSlow.bind(Buffer);
  const alloc = Buffer.alloc.bind(Buffer);
  vi.spyOn(Buffer, 'concat').mockImplementation((list: readonly Uint8Array[], total?: number) => {
    inConcat++;
    try {
      const out = concat(list, total);
      sizes.push(out.length);
      return out;
    } finally {
      inConcat--;
    }
  });
  const note = (n: number): void => {
    if (inConcat === 0) sizes.push(n);
  };
  vi.spyOn(Buffer, 'allocUnsafe').mockImplementation((n: number) => {
    note(n);
    return allocUnsafe(n);
  });
  vi.spyOn(Buffer, 'allocUnsafeSlow').mockImplementation((n: number) => {
    note(n);
    return allocUnsafeSlow(n);
  });
  vi.spyOn(Buffer, 'alloc').mockImplementation((n: number, fill?: string | number | Uint8Array, enc?: BufferEncoding) => {
    note(n);
    return alloc(n, fill, enc);
  });
  return { bytes: () => sizes.reduce((a, b) => a + b, 0), count: () => sizes.length };
}

describe('FrameReader: no quadratic copying', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });
  const MiB = 1024 * 1024;
  const chunked = (wire: Buffer, size: number) => {
    const out: Buffer[] = [];
    for (let i = 0; i < wire.length; i += size) out.push(Buffer.from(wire.subarray(i, i + size)));
    return out;
  };

  it('a 1 MiB length-framed frame in 1 KiB chunks is merged once, with the decoder asked twice', () => {
    const f = createFraming({ type: 'length' }, 2 * MiB);
    const body = Buffer.alloc(MiB, 0x5a);
    body.write('end', MiB - 3);
    const chunks = chunked(encodeFrame(f, body), 1024);
    const inner = f.createDecoder();
    let calls = 0;
    const counting: FrameDecoder = {
      get consumed() {
        return inner.consumed;
      },
      get needed() {
        return inner.needed;
      },
      decode(buf, off) {
        calls++;
        return inner.decode(buf, off);
      },
    };
    const r = new FrameReader(counting);
    const spy = spyMerges();
    let frame: Buffer | null = null;
    for (const c of chunks) {
      r.push(c);
      frame = r.next() ?? frame;
    }
    expect(spy.count()).toBe(1);
    expect(spy.bytes()).toBe(MiB + 4);
    vi.restoreAllMocks();
    expect(calls).toBe(2);
    expect(frame!.equals(body)).toBe(true);
    expect(r.buffered).toBe(0);
  });

  it.each([
    ['line', { type: 'line' } as const, '\n'],
    ['delimiter', { type: 'delimiter', delimiter: '\r\n\r\n' } as const, '\r\n\r\n'],
  ])('a 1 MiB %s in 1 KiB chunks copies O(n) bytes, not O(n²)', (_n, options, delim) => {
    const f = createFraming(options, 2 * MiB);
    const body = Buffer.alloc(MiB, 0x61);
    const chunks = chunked(Buffer.concat([body, Buffer.from(delim), Buffer.from('tail')]), 1024);
    const r = new FrameReader(f.createDecoder());
    const spy = spyMerges();
    let frame: Buffer | null = null;
    for (const c of chunks) {
      r.push(c);
      frame = r.next() ?? frame;
    }
    const copied = spy.bytes();
    const merges = spy.count();
    vi.restoreAllMocks();
    // Growing the buffer geometrically allocates under 8n bytes in ~log2(1024) merges;
    // re-merging on every chunk would copy ~n²/2048 = 512 MiB in 1024 merges.
    expect(copied).toBeLessThan(8 * MiB);
    expect(merges).toBeLessThan(30);
    expect(frame!.equals(body)).toBe(true);
    expect(r.buffered).toBe(4);
  });
});
