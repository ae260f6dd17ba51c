import { describe, expect, it } from 'vitest';
import { FrameReader, createFraming, encodeFrame } from '../../dist/src/framing/index.js';
import type { LengthFramingOptions } from '../../dist/src/framing/index.js';
import { FrameTooLargeError } from '../../dist/src/errors.js';
import { bytes, decode, expectShoal, expectTable, hex } from './helpers.js';

const MAX = 1024;
const length = (o: Partial<LengthFramingOptions> = {}, max = MAX) => createFraming({ type: 'length', ...o }, max);
const HW = '"HELLO, WORLD"'; // 12 bytes, 0x0C

// The examples of Netty's LengthFieldBasedFrameDecoder javadoc, byte for byte.
// Netty's initialBytesToStrip defaults to 0, shoal's to the whole header, so every row sets it.
describe('length framing: the Netty LengthFieldBasedFrameDecoder javadoc tables', () => {
  const rows: Array<[string, Partial<LengthFramingOptions>, string, string]> = [
    [
      '2 bytes length field at offset 0, do not strip header',
      { lengthFieldOffset: 0, lengthFieldLength: 2, lengthAdjustment: 0, initialBytesToStrip: 0 },
      `00 0C ${HW}`,
      `00 0C ${HW}`,
    ],
    [
      '2 bytes length field at offset 0, strip header',
      { lengthFieldOffset: 0, lengthFieldLength: 2, lengthAdjustment: 0, initialBytesToStrip: 2 },
      `00 0C ${HW}`,
      HW,
    ],
    [
      '2 bytes length field at offset 0, do not strip header, the length field represents the length of the whole message',
      { lengthFieldOffset: 0, lengthFieldLength: 2, lengthAdjustment: -2, initialBytesToStrip: 0 },
      `00 0E ${HW}`,
      `00 0E ${HW}`,
    ],
    [
      '3 bytes length field at the end of 5 bytes header, do not strip header',
      { lengthFieldOffset: 2, lengthFieldLength: 3, lengthAdjustment: 0, initialBytesToStrip: 0 },
      `CA FE 00 00 0C ${HW}`,
      `CA FE 00 00 0C ${HW}`,
    ],
    [
      '3 bytes length field at the beginning of 5 bytes header, do not strip header',
      { lengthFieldOffset: 0, lengthFieldLength: 3, lengthAdjustment: 2, initialBytesToStrip: 0 },
      `00 00 0C CA FE ${HW}`,
      `00 00 0C CA FE ${HW}`,
    ],
    [
      '2 bytes length field at offset 1 in the middle of 4 bytes header, strip the first header field and the length field',
      { lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: 1, initialBytesToStrip: 3 },
      `CA 00 0C FE ${HW}`,
      `FE ${HW}`,
    ],
    [
      '2 bytes length field at offset 1 in the middle of 4 bytes header, strip HDR1 and length, the length field represents the length of the whole message',
      { lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: -3, initialBytesToStrip: 3 },
      `CA 00 10 FE ${HW}`,
      `FE ${HW}`,
    ],
  ];

  it.each(rows)('%s', (_name, options, before, after) => {
    expectTable(length(options), bytes(before), [bytes(after)]);
  });

  it('the shoal default: [u32 BE length][body], header stripped', () => {
    expectTable(length(), bytes('00 00 00 03 "HI?"'), [bytes('"HI?"')]);
  });
});

describe('length framing: field sizes and byte order', () => {
  // A 258-byte body (0x0102) tells big from little endian for every field of 2+ bytes.
  const body = Buffer.alloc(0x0102, 0x61);
  const rows: Array<[1 | 2 | 3 | 4 | 8, 'be' | 'le', string, Buffer]> = [
    [1, 'be', '05', Buffer.from('hello')],
    [1, 'le', '05', Buffer.from('hello')],
    [2, 'be', '01 02', body],
    [2, 'le', '02 01', body],
    [3, 'be', '00 01 02', body],
    [3, 'le', '02 01 00', body],
    [4, 'be', '00 00 01 02', body],
    [4, 'le', '02 01 00 00', body],
    [8, 'be', '00 00 00 00 00 00 01 02', body],
    [8, 'le', '02 01 00 00 00 00 00 00', body],
  ];

  it.each(rows)('%i-byte %s field: header %s', (lengthFieldLength, byteOrder, header, b) => {
    const f = length({ lengthFieldLength, byteOrder });
    const wire = Buffer.concat([bytes(header), b]);
    // Encoder writes exactly the table's bytes...
    expect(hex(encodeFrame(f, b))).toBe(hex(wire));
    // ...and the decoder reads them back in every two-way split and byte by byte.
    const got = decode(f, [wire]);
    expect(got.error).toBeNull();
    expect(got.frames.map(hex)).toEqual([hex(b)]);
    for (let i = 1; i < wire.length; i++) {
      expect(decode(f, [wire.subarray(0, i), wire.subarray(i)]).frames.map(hex)).toEqual([hex(b)]);
    }
    expect(decode(f, [...wire].map((x) => Buffer.of(x))).frames.map(hex)).toEqual([hex(b)]);
  });

  it('reads the same header bytes differently in the other byte order', () => {
    // 02 01 is 0x0201 = 513 in big endian: the 258 bytes are an incomplete frame.
    const wire = Buffer.concat([bytes('02 01'), body]);
    const be = decode(length({ lengthFieldLength: 2, byteOrder: 'be' }), [wire]);
    expect(be.frames).toEqual([]);
    expect(be.error).toBe('SHOAL_FRAME_TRUNCATED');
    expect(decode(length({ lengthFieldLength: 2, byteOrder: 'le' }), [wire]).frames.map(hex)).toEqual([hex(body)]);
  });

  it('reads a 3-byte field above 16 bits and an 8-byte field above 32 bits', () => {
    const big = Buffer.alloc(0x010203, 7);
    const f3 = length({ lengthFieldLength: 3 }, 0x020000);
    expect(hex(encodeFrame(f3, big).subarray(0, 3))).toBe('010203');
    expect(decode(f3, [encodeFrame(f3, big)]).frames[0]!.equals(big)).toBe(true);

    // 2^32 + 5 cannot be framed under maxFrame but must be read exactly, not as 5.
    const f8 = length({ lengthFieldLength: 8, byteOrder: 'le' }, 64);
    const e = expectShoal(() => decode8(f8, bytes('05 00 00 00 01 00 00 00')), 'SHOAL_FRAME_TOO_LARGE');
    expect((e as FrameTooLargeError).length).toBe(8 + 2 ** 32 + 5);
  });
});

function decode8(f: ReturnType<typeof length>, header: Buffer): void {
  const r = new FrameReader(f.createDecoder());
  r.push(header);
  r.next();
}

describe('length framing: zero-length and many frames', () => {
  it('a zero length is an empty frame, in every chunking', () => {
    expectTable(length(), bytes('00 00 00 00'), [Buffer.alloc(0)]);
  });

  it('empty and non-empty frames mixed in one chunk', () => {
    expectTable(
      length({ lengthFieldLength: 2 }),
      bytes('00 00 00 00 00 03 "abc" 00 00 00 01 "z" 00 00'),
      [bytes(''), bytes(''), bytes('"abc"'), bytes(''), bytes('"z"'), bytes('')],
    );
  });

  it('a header-only frame when the length field counts the header (adjustment -2, value 2)', () => {
    expectTable(length({ lengthFieldLength: 2, lengthAdjustment: -2, initialBytesToStrip: 0 }), bytes('00 02'), [bytes('00 02')]);
  });

  it('200 frames in one chunk come out in order, as views of that chunk', () => {
    const f = length({ lengthFieldLength: 1 });
    const bodies = Array.from({ length: 200 }, (_, i) => Buffer.alloc(i % 7, i));
    const wire = Buffer.concat(bodies.map((b) => encodeFrame(f, b)));
    const r = new FrameReader(f.createDecoder());
    r.push(wire);
    const out: Buffer[] = [];
    for (let x = r.next(); x !== null; x = r.next()) out.push(x);
    expect(out.map(hex)).toEqual(bodies.map(hex));
    for (const x of out) expect(x.buffer).toBe(wire.buffer);
    expect(r.buffered).toBe(0);
    r.end();
  });
});

describe('length framing: maxFrame', () => {
  it('accepts a frame of exactly maxFrame bytes (header included) and rejects one more', () => {
    const f = length({}, 16);
    expect(decode(f, [Buffer.concat([bytes('00 00 00 0C'), Buffer.alloc(12)])]).frames).toHaveLength(1);
    const e = expectShoal(() => decode8(f, bytes('00 00 00 0D')), 'SHOAL_FRAME_TOO_LARGE', { length: 17, max: 16 });
    expect(e).toBeInstanceOf(FrameTooLargeError);
    expect(e.message).toContain('17');
    expect(e.message).toContain('16');
  });

  it('applies maxFrame to the adjusted whole frame (adjustment -2: the field counts the header)', () => {
    const f = length({ lengthFieldLength: 2, lengthAdjustment: -2, initialBytesToStrip: 0 }, 10);
    expect(decode(f, [Buffer.concat([bytes('00 0A'), Buffer.alloc(8)])]).frames).toHaveLength(1);
    expectShoal(() => decode8(f, bytes('00 0B')), 'SHOAL_FRAME_TOO_LARGE', { length: 11, max: 10 });
  });

  it('applies maxFrame with a positive adjustment and a field offset', () => {
    const f = length({ lengthFieldOffset: 1, lengthFieldLength: 1, lengthAdjustment: 2 }, 10);
    // 2 header + 6 + 2 = 10: fits; 7 -> 11: too large.
    expect(decode(f, [Buffer.concat([bytes('FF 06'), Buffer.alloc(8)])]).frames[0]).toHaveLength(8);
    expectShoal(() => decode8(f, bytes('FF 07')), 'SHOAL_FRAME_TOO_LARGE', { length: 11, max: 10 });
  });

  it.each([
    [4, 'be', 'FF FF FF FF'],
    [4, 'le', 'FF FF FF FF'],
    [4, 'be', 'FF FF FF F0'],
    [8, 'be', 'FF FF FF FF FF FF FF FF'],
    [8, 'be', '00 00 00 01 00 00 00 00'],
    [8, 'le', '00 00 00 00 01 00 00 00'],
  ] as const)('a %i-byte %s header claiming %s fails as soon as the header is in, no body buffered', (n, byteOrder, header) => {
    const f = length({ lengthFieldLength: n, byteOrder }, 1024 * 1024);
    const h = bytes(header);
    const r = new FrameReader(f.createDecoder());
    for (let i = 0; i < h.length - 1; i++) {
      r.push(h.subarray(i, i + 1));
      expect(r.next()).toBeNull();
    }
    r.push(h.subarray(h.length - 1));
    const e = expectShoal(() => r.next(), 'SHOAL_FRAME_TOO_LARGE', { max: 1024 * 1024 }) as FrameTooLargeError;
    expect(e.length).toBeGreaterThan(2 ** 31);
    expect(r.buffered).toBe(n); // nothing beyond the header was asked for or kept
  });

  it('a 4 GiB claim followed by body bytes in the same chunk also fails at once', () => {
    const r = new FrameReader(length().createDecoder());
    r.push(Buffer.concat([bytes('FF FF FF FF'), Buffer.alloc(100)]));
    expectShoal(() => r.next(), 'SHOAL_FRAME_TOO_LARGE', { length: 4 + 0xffffffff, max: MAX });
    expect(r.buffered).toBe(104);
  });

  it('fails in whichever frame is oversized, after emitting the good ones before it', () => {
    const f = length({ lengthFieldLength: 1 }, 8);
    const got = decode(f, [bytes('02 "ab" 00 08 "abcdefgh"')]);
    expect(got.frames.map(String)).toEqual(['ab', '']);
    expect(got.error).toBe('SHOAL_FRAME_TOO_LARGE');
    expect((got.err as FrameTooLargeError).length).toBe(9);
  });
});

describe('length framing: invalid and truncated input', () => {
  it('an adjusted length below zero is SHOAL_FRAME_INVALID (the field must count its own header)', () => {
    const f = length({ lengthFieldLength: 2, lengthAdjustment: -2, initialBytesToStrip: 0 });
    for (const h of ['00 00', '00 01']) {
      const got = decode(f, [bytes(h)]);
      expect(got.error).toBe('SHOAL_FRAME_INVALID');
      expect(String(got.err)).toContain('-2');
    }
  });

  it('end() in the middle of the header or the body is SHOAL_FRAME_TRUNCATED with the byte count', () => {
    const f = length();
    for (const partial of ['00', '00 00 00', '00 00 00 05', '00 00 00 05 "abcd"']) {
      const b = bytes(partial);
      const got = decode(f, [b]);
      expect(got.frames).toEqual([]);
      expect(got.error).toBe('SHOAL_FRAME_TRUNCATED');
      expect((got.err as { buffered: number }).buffered).toBe(b.length);
    }
  });

  it('a leftover after whole frames is truncated too, the whole frames still come out', () => {
    const got = decode(length(), [bytes('00 00 00 01 "x" 00 00')]);
    expect(got.frames.map(String)).toEqual(['x']);
    expect(got.error).toBe('SHOAL_FRAME_TRUNCATED');
  });
});

describe('length framing: encoder', () => {
  it('round-trips for every table configuration whose strip is the whole header', () => {
    const configs: Array<Partial<LengthFramingOptions>> = [
      {},
      { lengthFieldLength: 1 },
      { lengthFieldLength: 2, byteOrder: 'le' },
      { lengthFieldLength: 3, lengthAdjustment: 2 },
      { lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: 1, initialBytesToStrip: 3 },
      { lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: -3, initialBytesToStrip: 3 },
      { lengthFieldLength: 8, byteOrder: 'le', lengthAdjustment: -8 },
    ];
    for (const o of configs) {
      const f = length(o);
      const bodies = ['ab', 'HELLO, WORLD', 'xyz'.repeat(50)].map((s) => Buffer.from(s));
      const wire = Buffer.concat(bodies.map((b) => encodeFrame(f, b)));
      expect(decode(f, [wire]).frames.map(String), JSON.stringify(o)).toEqual(bodies.map(String));
    }
  });

  it('writes the Netty javadoc bytes: the field holds body length minus the adjustment, the offset is zero-filled', () => {
    // Row "HDR1 | LEN | HDR2": the encoder's body is everything after the field (HDR2 + content).
    const f = length({ lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: -3, initialBytesToStrip: 3 });
    expect(hex(encodeFrame(f, bytes(`FE ${HW}`)))).toBe(hex(bytes(`00 00 10 FE ${HW}`)));
    const out = Buffer.alloc(24, 0xaa);
    expect(f.encoder.encodeInto(bytes(`FE ${HW}`), out, 5)).toBe(16);
    expect(hex(out)).toBe(hex(bytes(`AA AA AA AA AA 00 00 10 FE ${HW} AA AA AA`)));
  });

  it('encodeHeader() writes exactly the bytes before the body: header + body is the whole frame, with the same checks', () => {
    const configs: Array<Partial<LengthFramingOptions>> = [
      {},
      { lengthFieldLength: 1 },
      { lengthFieldLength: 2, byteOrder: 'le' },
      { lengthFieldLength: 3, lengthAdjustment: 2 },
      { lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: -3, initialBytesToStrip: 3 },
      { lengthFieldLength: 8, byteOrder: 'le', lengthAdjustment: -8 },
    ];
    for (const o of configs) {
      const f = length(o);
      const body = Buffer.from('xyz'.repeat(50));
      const header = Buffer.alloc(f.encoder.frameLength(body.length) - body.length, 0xaa);
      expect(f.encoder.encodeHeader!(body.length, header, 0), JSON.stringify(o)).toBe(header.length);
      expect(hex(Buffer.concat([header, body])), JSON.stringify(o)).toBe(hex(encodeFrame(f, body)));
    }
    expectShoal(() => length({}, 16).encoder.encodeHeader!(13, Buffer.alloc(8), 0), 'SHOAL_FRAME_TOO_LARGE', { length: 17, max: 16 });
    expectShoal(() => length({ lengthFieldLength: 1 }, 4096).encoder.encodeHeader!(256, Buffer.alloc(8), 0), 'SHOAL_FRAME_INVALID');
  });

  it('enforces the same maxFrame as the decoder (SHOAL_FRAME_TOO_LARGE with length and max)', () => {
    const f = length({}, 16);
    expect(f.encoder.frameLength(12)).toBe(16);
    expectShoal(() => f.encoder.frameLength(13), 'SHOAL_FRAME_TOO_LARGE', { length: 17, max: 16 });
    expectShoal(() => encodeFrame(f, Buffer.alloc(13)), 'SHOAL_FRAME_TOO_LARGE', { length: 17, max: 16 });
    expectShoal(() => f.encoder.encodeInto(Buffer.alloc(13), Buffer.alloc(64), 0), 'SHOAL_FRAME_TOO_LARGE');
  });

  it('rejects a body that the field cannot express (SHOAL_FRAME_INVALID)', () => {
    const one = length({ lengthFieldLength: 1 }, 4096);
    expect(one.encoder.frameLength(255)).toBe(256);
    expect(expectShoal(() => one.encoder.frameLength(256), 'SHOAL_FRAME_INVALID').message).toContain('256');
    // A positive adjustment needs at least that many bytes after the field.
    const adj = length({ lengthFieldLength: 2, lengthAdjustment: 2 });
    expect(adj.encoder.frameLength(2)).toBe(4);
    expectShoal(() => adj.encoder.frameLength(1), 'SHOAL_FRAME_INVALID');
  });
});

describe('length framing: option validation', () => {
  const bad: Array<[Partial<LengthFramingOptions>, number, string[]]> = [
    [{ lengthFieldOffset: -1 }, MAX, ['lengthFieldOffset', '-1']],
    [{ lengthFieldOffset: 1.5 }, MAX, ['lengthFieldOffset', '1.5']],
    [{ lengthFieldLength: 5 as 4 }, MAX, ['lengthFieldLength', '5']],
    [{ lengthFieldLength: 0 as 4 }, MAX, ['lengthFieldLength', '0']],
    // JSON or CLI input: a string key of the size table is still not a number.
    [{ lengthFieldLength: '4' as unknown as 4 }, MAX, ['lengthFieldLength', '4']],
    [{ lengthFieldLength: 'toString' as unknown as 4 }, MAX, ['lengthFieldLength', 'toString']],
    [{ byteOrder: 'middle' as 'be' }, MAX, ['byteOrder', 'middle']],
    [{ lengthAdjustment: 0.5 }, MAX, ['lengthAdjustment', '0.5']],
    [{ lengthAdjustment: Number.NaN }, MAX, ['lengthAdjustment', 'NaN']],
    [{ initialBytesToStrip: -1 }, MAX, ['initialBytesToStrip', '-1']],
    [{ maxFrame: 3 }, MAX, ['maxFrame (3)', 'lengthFieldOffset (0)', 'lengthFieldLength (4)']],
    [{ lengthFieldOffset: 6, lengthFieldLength: 2 }, 7, ['maxFrame (7)', 'lengthFieldOffset (6)', 'lengthFieldLength (2)']],
    [{ maxFrame: Number.POSITIVE_INFINITY }, MAX, ['maxFrame', 'Infinity']],
    [
      { lengthFieldOffset: 1, lengthFieldLength: 2, lengthAdjustment: 1, initialBytesToStrip: 5 },
      MAX,
      ['initialBytesToStrip (5)', 'lengthFieldOffset (1)', 'lengthFieldLength (2)', 'lengthAdjustment (1)'],
    ],
    [{ lengthFieldLength: 2, lengthAdjustment: -2, initialBytesToStrip: 3 }, MAX, ['initialBytesToStrip (3)', 'lengthAdjustment (-2)']],
  ];

  it.each(bad)('%j (server maxFrame %i) is SHOAL_INVALID_OPTION naming every value', (o, max, words) => {
    const e = expectShoal(() => length(o, max), 'SHOAL_INVALID_OPTION');
    for (const w of words) expect(e.message).toContain(w);
  });

  it('the per-framing maxFrame overrides the server one', () => {
    const f = length({ maxFrame: 8 }, 1 << 20);
    expectShoal(() => f.encoder.frameLength(5), 'SHOAL_FRAME_TOO_LARGE', { max: 8 });
  });

  it('a header-sized maxFrame is allowed (only empty frames fit)', () => {
    expectTable(length({}, 4), bytes('00 00 00 00'), [bytes('')]);
  });
});
