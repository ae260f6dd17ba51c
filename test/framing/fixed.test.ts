import { describe, expect, it } from 'vitest';
import { FrameReader, createFraming, encodeFrame } from '../../dist/src/framing/index.js';
import { bytes, decode, expectShoal, expectTable, hex } from './helpers.js';

const fixed = (frameLength: number, max = 1024) => createFraming({ type: 'fixed', frameLength }, max);

describe('fixed framing: BEFORE/AFTER', () => {
  it('frameLength 3: "ABCDEF" -> "ABC", "DEF"', () => {
    expectTable(fixed(3), bytes('"ABCDEF"'), [bytes('"ABC"'), bytes('"DEF"')]);
  });

  it('frameLength 1: every byte is a frame', () => {
    expectTable(fixed(1), bytes('00 FF 0A'), [bytes('00'), bytes('FF'), bytes('0A')]);
  });

  it('frameLength 8: binary records, many in one chunk', () => {
    const rec = bytes('01 02 03 04 05 06 07 08');
    expectTable(fixed(8), Buffer.concat([rec, rec, rec, rec]), [rec, rec, rec, rec]);
  });

  it('"ABCDEFG" (frameLength 3): "G" waits, and end() calls it truncated', () => {
    const got = decode(fixed(3), [bytes('"ABCDEFG"')]);
    expect(got.frames.map(String)).toEqual(['ABC', 'DEF']);
    expect(got.error).toBe('SHOAL_FRAME_TRUNCATED');
    expect((got.err as { buffered: number }).buffered).toBe(1);
  });

  it('a frame of maxFrame bytes is allowed', () => {
    expectTable(fixed(16, 16), Buffer.alloc(16, 9), [Buffer.alloc(16, 9)]);
  });

  it('frames are views of the chunk', () => {
    const chunk = Buffer.from('aabbcc');
    const r = new FrameReader(fixed(2).createDecoder());
    r.push(chunk);
    for (let f = r.next(); f !== null; f = r.next()) expect(f.buffer).toBe(chunk.buffer);
    expect(r.buffered).toBe(0);
  });
});

describe('fixed framing: encoder', () => {
  it('writes the body as is and round-trips', () => {
    const f = fixed(4);
    const bodies = ['abcd', 'efgh', '\0\0\0\0'].map((s) => Buffer.from(s));
    const wire = Buffer.concat(bodies.map((b) => encodeFrame(f, b)));
    expect(hex(wire)).toBe(hex(Buffer.concat(bodies)));
    expect(decode(f, [wire]).frames.map(hex)).toEqual(bodies.map(hex));
  });

  it('a reply of another size is SHOAL_FRAME_INVALID naming both sizes', () => {
    const f = fixed(4);
    for (const n of [0, 3, 5]) {
      const e = expectShoal(() => f.encoder.frameLength(n), 'SHOAL_FRAME_INVALID');
      expect(e.message).toContain('4');
      expect(e.message).toContain(`got ${n}`);
      expectShoal(() => encodeFrame(f, Buffer.alloc(n)), 'SHOAL_FRAME_INVALID');
      expectShoal(() => f.encoder.encodeInto(Buffer.alloc(n), Buffer.alloc(16), 0), 'SHOAL_FRAME_INVALID');
    }
  });

  it('encodeInto writes at the offset', () => {
    const out = Buffer.alloc(6, 0x2e);
    expect(fixed(2).encoder.encodeInto(Buffer.from('ab'), out, 3)).toBe(2);
    expect(String(out)).toBe('...ab.');
  });
});

describe('fixed framing: option validation', () => {
  it.each([
    [0, 1024, ['frameLength', 'got 0']],
    [-3, 1024, ['frameLength', 'got -3']],
    [2.5, 1024, ['frameLength', 'got 2.5']],
    [Number.NaN, 1024, ['frameLength', 'got NaN']],
    [undefined as unknown as number, 1024, ['frameLength', 'got undefined']],
    [17, 16, ['frameLength', 'maxFrame (16)', 'got 17']],
  ])('frameLength %s with maxFrame %i is SHOAL_INVALID_OPTION', (n, max, words) => {
    const e = expectShoal(() => fixed(n, max), 'SHOAL_INVALID_OPTION');
    for (const w of words) expect(e.message).toContain(w);
  });
});
