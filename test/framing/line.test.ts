import { describe, expect, it } from 'vitest';
import { FrameReader, createFraming, encodeFrame } from '../../dist/src/framing/index.js';
import type { DelimiterFramingOptions, LineFramingOptions } from '../../dist/src/framing/index.js';
import { bytes, decode, expectShoal, expectTable, hex } from './helpers.js';

const MAX = 1024;
const line = (o: Omit<LineFramingOptions, 'type'> = {}, max = MAX) => createFraming({ type: 'line', ...o }, max);
const delimiter = (d: DelimiterFramingOptions['delimiter'], o: Omit<DelimiterFramingOptions, 'type' | 'delimiter'> = {}, max = MAX) =>
  createFraming({ type: 'delimiter', delimiter: d, ...o }, max);
const strs = (...s: string[]) => s.map((x) => Buffer.from(x, 'latin1'));

/** Push `input` one byte at a time; the index of the byte whose next() threw, or -1. */
function throwsAtByte(framing: ReturnType<typeof line>, input: Buffer): { at: number; err: unknown; buffered: number } {
  const r = new FrameReader(framing.createDecoder());
  for (let i = 0; i < input.length; i++) {
    r.push(input.subarray(i, i + 1));
    try {
      while (r.next() !== null);
    } catch (err) {
      return { at: i, err, buffered: r.buffered };
    }
  }
  return { at: -1, err: null, buffered: r.buffered };
}

describe('line framing: BEFORE/AFTER', () => {
  const rows: Array<[string, Omit<LineFramingOptions, 'type'>, string, Buffer[]]> = [
    ['\\n and \\r\\n, stripCR (default)', {}, '"ab\\ncd\\r\\n"', strs('ab', 'cd')],
    ['\\n and \\r\\n, stripCR false keeps the \\r', { stripCR: false }, '"ab\\ncd\\r\\n"', strs('ab', 'cd\r')],
    ['empty lines', {}, '"\\n\\n\\r\\n"', strs('', '', '')],
    ['empty lines, stripCR false', { stripCR: false }, '"\\n\\n\\r\\n"', strs('', '', '\r')],
    ['a \\r not before \\n is data', {}, '"a\\rb\\n\\r\\rc\\n"', strs('a\rb', '\r\rc')],
    ['only one \\r is stripped', {}, '"a\\r\\r\\n"', strs('a\r')],
    ['a lone \\r line is empty', {}, '"\\r\\n"', strs('')],
    ['binary bytes pass through', {}, '00 FF 80 0D 41 0A', [bytes('00 FF 80 0D 41')]],
    ['many lines in one chunk', {}, '"GET a\\r\\nGET b\\nSET c 1\\r\\n\\nQUIT\\n"', strs('GET a', 'GET b', 'SET c 1', '', 'QUIT')],
  ];
  it.each(rows)('%s', (_n, o, before, after) => expectTable(line(o), bytes(before), after));

  it('end() with an unterminated line is SHOAL_FRAME_TRUNCATED; after whole lines it is not', () => {
    const got = decode(line(), [bytes('"one\\ntwo"')]);
    expect(got.frames.map(String)).toEqual(['one']);
    expect(got.error).toBe('SHOAL_FRAME_TRUNCATED');
    expect((got.err as { buffered: number }).buffered).toBe(3);
    expect(decode(line(), [bytes('"one\\r"')]).error).toBe('SHOAL_FRAME_TRUNCATED');
    expect(decode(line(), [bytes('"one\\ntwo\\n"')]).error).toBeNull();
  });

  it('lines come out as views of the chunk, not copies', () => {
    const chunk = Buffer.from('a\nbb\nccc\n');
    const r = new FrameReader(line().createDecoder());
    r.push(chunk);
    const out = [r.next(), r.next(), r.next()];
    expect(out.map(String)).toEqual(['a', 'bb', 'ccc']);
    for (const f of out) expect(f!.buffer).toBe(chunk.buffer);
    expect(r.next()).toBeNull();
  });
});

describe('line framing: maxFrame (the delimiter and a stripped \\r are not counted)', () => {
  it('accepts a line of exactly maxFrame bytes, with \\n or \\r\\n', () => {
    expectTable(line({}, 5), bytes('"abcde\\n"'), strs('abcde'));
    expectTable(line({}, 5), bytes('"abcde\\r\\n"'), strs('abcde'));
    expectTable(line({ stripCR: false }, 5), bytes('"abcd\\r\\n"'), strs('abcd\r'));
  });

  it('rejects a terminated line of maxFrame + 1 bytes with length and max', () => {
    for (const input of ['"abcdef\\n"', '"abcdef\\r\\n"']) {
      const got = decode(line({}, 5), [bytes(input)]);
      expect(got.error).toBe('SHOAL_FRAME_TOO_LARGE');
      expect(got.err).toMatchObject({ length: 6, max: 5 });
    }
    // Without stripCR the \r is part of the line.
    expect(decode(line({ stripCR: false }, 5), [bytes('"abcde\\r\\n"')]).err).toMatchObject({ length: 6, max: 5 });
  });

  it('fails fast: maxFrame + 1 bytes without a \\n throw at that byte, not later', () => {
    for (const stripCR of [true, false]) {
      const { at, err, buffered } = throwsAtByte(line({ stripCR }, 5), Buffer.from('abcdefghij'));
      expect(at, `stripCR ${stripCR}`).toBe(5);
      expect(err).toMatchObject({ code: 'SHOAL_FRAME_TOO_LARGE', length: 6, max: 5 });
      expect(buffered).toBe(6);
    }
  });

  it('with stripCR, a \\r at byte maxFrame + 1 may still end the line: wait for the next byte', () => {
    const f = line({}, 5);
    expect(throwsAtByte(f, bytes('"abcde\\r\\n"')).at).toBe(-1);
    expect(decode(f, [...bytes('"abcde\\r\\n"')].map((b) => Buffer.of(b))).frames.map(String)).toEqual(['abcde']);
    // ...but a byte other than \n after it settles it: 7 bytes of line.
    const late = throwsAtByte(f, bytes('"abcde\\rx"'));
    expect(late.at).toBe(6);
    expect(late.err).toMatchObject({ code: 'SHOAL_FRAME_TOO_LARGE', max: 5 });
    // Without stripCR the \r counts: the 6th byte already makes the line too long.
    expect(throwsAtByte(line({ stripCR: false }, 5), bytes('"abcde\\r\\n"')).at).toBe(5);
  });

  it('a long run of bytes without \\n is refused after maxFrame + 1 bytes, in one chunk too', () => {
    const r = new FrameReader(line().createDecoder());
    r.push(Buffer.alloc(MAX, 0x61));
    expect(r.next()).toBeNull();
    r.push(Buffer.from('b'));
    expectShoal(() => r.next(), 'SHOAL_FRAME_TOO_LARGE', { length: MAX + 1, max: MAX });
  });

  it('lines before an overlong one are still emitted', () => {
    const got = decode(line({}, 3), [bytes('"ab\\n\\nabcd\\n"')]);
    expect(got.frames.map(String)).toEqual(['ab', '']);
    expect(got.error).toBe('SHOAL_FRAME_TOO_LARGE');
  });
});

describe('line framing: encoder', () => {
  it("ends replies with '\\n' by default and '\\r\\n' with eol", () => {
    expect(String(encodeFrame(line(), Buffer.from('hi')))).toBe('hi\n');
    expect(String(encodeFrame(line({ eol: '\r\n' }), Buffer.from('hi')))).toBe('hi\r\n');
    expect(String(encodeFrame(line(), Buffer.alloc(0)))).toBe('\n');
  });

  it('round-trips through the decoder for both eols (stripCR on)', () => {
    for (const eol of ['\n', '\r\n'] as const) {
      const f = line({ eol });
      const bodies = strs('', 'x', 'hello world', 'a\rb');
      expect(decode(f, [Buffer.concat(bodies.map((b) => encodeFrame(f, b)))]).frames.map(String)).toEqual(bodies.map(String));
    }
  });

  it('enforces the same maxFrame (delimiter excluded)', () => {
    const f = line({ eol: '\r\n' }, 5);
    expect(f.encoder.frameLength(5)).toBe(7);
    expectShoal(() => f.encoder.frameLength(6), 'SHOAL_FRAME_TOO_LARGE', { length: 6, max: 5 });
    expectShoal(() => encodeFrame(f, Buffer.alloc(6)), 'SHOAL_FRAME_TOO_LARGE', { length: 6, max: 5 });
  });

  it('encodeInto writes at the offset and returns the bytes written', () => {
    const out = Buffer.alloc(8, 0x2e);
    expect(line().encoder.encodeInto(Buffer.from('abc'), out, 2)).toBe(4);
    expect(String(out)).toBe('..abc\n..');
  });
});

describe('line framing: option validation', () => {
  it.each([
    [{ maxFrame: 0 }, MAX, ['maxFrame', "'line'", '0']],
    [{ maxFrame: -5 }, MAX, ['maxFrame', '-5']],
    [{ maxFrame: 2.5 }, MAX, ['maxFrame', '2.5']],
    [{ maxFrame: Number.POSITIVE_INFINITY }, MAX, ['maxFrame', 'Infinity']],
    [{}, Number.NaN, ['maxFrame', 'NaN']],
    [{ eol: '\r' as '\n' }, MAX, ['eol', '"\\r"']],
  ] as const)('%j (server maxFrame %s) is SHOAL_INVALID_OPTION', (o, max, words) => {
    const e = expectShoal(() => line(o as Omit<LineFramingOptions, 'type'>, max), 'SHOAL_INVALID_OPTION');
    for (const w of words) expect(e.message).toContain(w);
  });
});

describe('delimiter framing: BEFORE/AFTER', () => {
  const rows: Array<[string, string | Uint8Array, string, Buffer[]]> = [
    ['one byte', ';', '"a;bc;;d;"', strs('a', 'bc', '', 'd')],
    ['\\r\\n\\r\\n (multi-byte, straddles every split)', '\r\n\r\n', '"a\\r\\nb\\r\\n\\r\\nc\\r\\n\\r\\n\\r\\n\\r\\n"', strs('a\r\nb', 'c', '')],
    ['a delimiter that overlaps itself: aab', 'aab', '"xaaab" "aab" "aaab"', strs('xa', '', 'a')],
    ['abab: first occurrence wins', 'abab', '"ababab" "ababxabab"', strs('', '', 'abx')],
    ['binary delimiter 00 FF', Uint8Array.of(0x00, 0xff), '01 00 FF 00 00 FF FF 00 FF', [bytes('01'), bytes('00'), bytes('FF')]],
    ['a \\r before the delimiter is kept (stripCR is for line only)', '\n', '"a\\r\\n"', strs('a\r')],
  ];
  it.each(rows)('%s', (_n, d, before, after) => expectTable(delimiter(d), bytes(before), after));

  it('a partial delimiter at the end of the stream is truncated', () => {
    const got = decode(delimiter('\r\n\r\n'), [bytes('"ok\\r\\n\\r\\npartial\\r\\n\\r"')]);
    expect(got.frames.map(String)).toEqual(['ok']);
    expect(got.error).toBe('SHOAL_FRAME_TRUNCATED');
    expect((got.err as { buffered: number }).buffered).toBe(10);
  });
});

describe('delimiter framing: maxFrame (delimiter excluded)', () => {
  it('a frame of exactly maxFrame bytes passes in every chunking; one more fails', () => {
    expectTable(delimiter('\r\n\r\n', {}, 5), bytes('"abcde\\r\\n\\r\\n"'), strs('abcde'));
    expect(decode(delimiter('\r\n\r\n', {}, 5), [bytes('"abcdef\\r\\n\\r\\n"')]).err).toMatchObject({
      code: 'SHOAL_FRAME_TOO_LARGE',
      length: 6,
      max: 5,
    });
  });

  it('fails fast: the byte that makes the frame certainly too long throws', () => {
    const f = delimiter('\r\n\r\n', {}, 5);
    // maxFrame + 1 bytes that cannot begin a delimiter: certain at once.
    const r1 = throwsAtByte(f, Buffer.from('abcdefgh'));
    expect(r1.at).toBe(5);
    expect(r1.err).toMatchObject({ code: 'SHOAL_FRAME_TOO_LARGE', length: 6, max: 5 });
    // A tail that may still become the delimiter is not counted...
    expect(throwsAtByte(f, bytes('"abcde\\r\\n\\r\\n"')).at).toBe(-1);
    // ...until it turns out not to be one.
    const r2 = throwsAtByte(f, bytes('"abcde\\r\\n\\rX"'));
    expect(r2.at).toBe(8);
    expect(r2.err).toMatchObject({ code: 'SHOAL_FRAME_TOO_LARGE', max: 5 });
    // Never later than maxFrame + delimiter length bytes.
    for (const s of ['abcde\r\r\r\r\r', 'abcde\r\n\r\r\n\r\n']) {
      const r = throwsAtByte(f, Buffer.from(s));
      expect(r.at, JSON.stringify(s)).toBeGreaterThanOrEqual(5);
      expect(r.at, JSON.stringify(s)).toBeLessThanOrEqual(5 + 4 - 1);
      expect(r.buffered).toBeLessThanOrEqual(5 + 4);
    }
  });

  it('encoder: body + delimiter, same max', () => {
    const f = delimiter(Uint8Array.of(0, 0), {}, 4);
    expect(hex(encodeFrame(f, Buffer.from('abcd')))).toBe('616263640000');
    expectShoal(() => encodeFrame(f, Buffer.from('abcde')), 'SHOAL_FRAME_TOO_LARGE', { length: 5, max: 4 });
  });

  it('the per-framing maxFrame overrides the server one', () => {
    expectShoal(() => decode8(delimiter(';', { maxFrame: 2 }, MAX), 'abc'), 'SHOAL_FRAME_TOO_LARGE', { max: 2 });
    expectShoal(() => decode8(line({ maxFrame: 2 }, MAX), 'abc'), 'SHOAL_FRAME_TOO_LARGE', { max: 2 });
  });
});

function decode8(f: ReturnType<typeof line>, s: string): void {
  const r = new FrameReader(f.createDecoder());
  r.push(Buffer.from(s));
  r.next();
}

describe('delimiter framing: option validation', () => {
  it.each([
    ['', MAX, ['delimiter', 'at least one byte']],
    [new Uint8Array(0), MAX, ['delimiter', 'at least one byte']],
    [10 as unknown as string, MAX, ['delimiter', 'string or a Uint8Array']],
    [undefined as unknown as string, MAX, ['delimiter']],
    [';', 0, ['maxFrame', "'delimiter'", '0']],
    [';', 1.5, ['maxFrame', '1.5']],
  ] as const)('delimiter %j, maxFrame %s is SHOAL_INVALID_OPTION', (d, max, words) => {
    const e = expectShoal(() => delimiter(d as string, {}, max), 'SHOAL_INVALID_OPTION');
    for (const w of words) expect(e.message).toContain(w);
  });

  it('copies the delimiter: changing the caller’s array later does not change framing', () => {
    const d = Uint8Array.of(0x3b);
    const f = delimiter(d);
    d[0] = 0x2c;
    expect(decode(f, [bytes('"a;b,"')]).frames.map(String)).toEqual(['a']);
  });
});

describe('delimiter encoders refuse replies the peer would cut differently', () => {
  it('a line reply containing \\n, or ending in \\r when CR is stripped, is SHOAL_FRAME_INVALID', () => {
    const line = createFraming({ type: 'line' }, 1024);
    expect(() => encodeFrame(line, Buffer.from('a\nb'))).toThrow(expect.objectContaining({ code: 'SHOAL_FRAME_INVALID' }));
    expect(() => encodeFrame(line, Buffer.from('ab\r'))).toThrow(expect.objectContaining({ code: 'SHOAL_FRAME_INVALID' }));
    expect(encodeFrame(line, Buffer.from('a\rb')).toString()).toBe('a\rb\n');
    const raw = createFraming({ type: 'line', stripCR: false }, 1024);
    expect(encodeFrame(raw, Buffer.from('ab\r')).toString()).toBe('ab\r\n');
  });

  it('a delimiter reply that contains or overlaps the delimiter is SHOAL_FRAME_INVALID', () => {
    const aba = createFraming({ type: 'delimiter', delimiter: 'aba' }, 1024);
    expect(() => encodeFrame(aba, Buffer.from('xabay'))).toThrow(expect.objectContaining({ code: 'SHOAL_FRAME_INVALID' }));
    // "ab" + "aba" = "ababa": the peer would find "aba" at 0 and read an empty frame.
    expect(() => encodeFrame(aba, Buffer.from('ab'))).toThrow(expect.objectContaining({ code: 'SHOAL_FRAME_INVALID' }));
    expect(encodeFrame(aba, Buffer.from('xa')).toString()).toBe('xaaba');
  });
});
