import { describe, expect, it } from 'vitest';
import { FrameReader, createFraming, encodeFrame } from '../../dist/src/framing/index.js';
import { bytes, decode, expectShoal, hex } from './helpers.js';

const raw = (max = 1024, o: { maxFrame?: number } = {}) => createFraming({ type: 'raw', ...o }, max);

describe('raw framing: BEFORE/AFTER', () => {
  // Raw frames follow the chunks, so the table is per chunking, not per byte stream.
  it('each chunk, pulled before the next arrives, is one frame, the same bytes (a view)', () => {
    const chunks = [bytes('"hello"'), bytes('00 01 02'), bytes('"x"')];
    const r = new FrameReader(raw().createDecoder());
    for (const c of chunks) {
      r.push(c);
      const f = r.next();
      expect(hex(f!)).toBe(hex(c));
      expect(f!.buffer).toBe(c.buffer);
      expect(r.next()).toBeNull();
    }
    r.end();
  });

  it('every split of a stream gives back its bytes in order, nothing lost or duplicated', () => {
    const input = bytes('"the quick brown fox" 00 FF 0A 0D');
    for (let i = 1; i < input.length; i++) {
      const got = decode(raw(), [input.subarray(0, i), input.subarray(i)]);
      expect(got.error).toBeNull();
      expect(got.frames.map(hex)).toEqual([hex(input.subarray(0, i)), hex(input.subarray(i))]);
    }
    const byByte = decode(raw(), [...input].map((b) => Buffer.of(b)));
    expect(byByte.frames).toHaveLength(input.length);
    expect(hex(Buffer.concat(byByte.frames))).toBe(hex(input));
  });

  it('a chunk larger than maxFrame is cut into maxFrame pieces', () => {
    const got = decode(raw(4), [bytes('"abcdefghij"')]);
    expect(got.frames.map(String)).toEqual(['abcd', 'efgh', 'ij']);
    expect(got.error).toBeNull();
  });

  it('chunks pushed before pulling come out one by one, never merged', () => {
    const r = new FrameReader(raw().createDecoder());
    r.push(Buffer.from('ab'));
    r.push(Buffer.from('cd'));
    expect(r.buffered).toBe(4);
    expect(String(r.next())).toBe('ab');
    expect(String(r.next())).toBe('cd');
    expect(r.next()).toBeNull();
  });

  it('an empty chunk is not a frame, and end() after pulling everything is clean', () => {
    const r = new FrameReader(raw().createDecoder());
    r.push(Buffer.alloc(0));
    expect(r.next()).toBeNull();
    r.end();
  });

  it('end() with unpulled bytes is SHOAL_FRAME_TRUNCATED', () => {
    const r = new FrameReader(raw().createDecoder());
    r.push(Buffer.from('abc'));
    expectShoal(() => r.end(), 'SHOAL_FRAME_TRUNCATED', { buffered: 3 });
  });
});

describe('raw framing: encoder', () => {
  it('writes replies as they are, up to maxFrame', () => {
    const f = raw(4);
    expect(hex(encodeFrame(f, Buffer.from('abcd')))).toBe(hex(Buffer.from('abcd')));
    expect(encodeFrame(f, Buffer.alloc(0))).toHaveLength(0);
    expectShoal(() => encodeFrame(f, Buffer.from('abcde')), 'SHOAL_FRAME_TOO_LARGE', { length: 5, max: 4 });
    expectShoal(() => f.encoder.frameLength(5), 'SHOAL_FRAME_TOO_LARGE', { length: 5, max: 4 });
    expect(raw(1024, { maxFrame: 2 }).encoder.frameLength(2)).toBe(2);
    expectShoal(() => raw(1024, { maxFrame: 2 }).encoder.frameLength(3), 'SHOAL_FRAME_TOO_LARGE', { max: 2 });
  });

  it('round-trips when each reply is its own chunk', () => {
    const f = raw();
    const bodies = ['a', 'bc', 'def'].map((s) => Buffer.from(s));
    expect(decode(f, bodies.map((b) => encodeFrame(f, b))).frames.map(String)).toEqual(['a', 'bc', 'def']);
  });
});

describe('raw framing: option validation', () => {
  it.each([
    [{ maxFrame: 0 }, 1024, 'got 0'],
    [{ maxFrame: 1.5 }, 1024, 'got 1.5'],
    [{}, -1, 'got -1'],
    [{}, Number.POSITIVE_INFINITY, 'got Infinity'],
  ])('%j with server maxFrame %s is SHOAL_INVALID_OPTION', (o, max, word) => {
    const e = expectShoal(() => raw(max, o), 'SHOAL_INVALID_OPTION');
    expect(e.message).toContain('maxFrame');
    expect(e.message).toContain(word);
  });
});
