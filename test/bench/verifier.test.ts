import { describe, expect, it } from 'vitest';
import { buildMessage, expectedBenchReply } from '../../dist/src/bench/message.js';
import type { MessageSpec } from '../../dist/src/bench/message.js';
import { ReplyVerifier } from '../../dist/src/bench/verifier.js';

const SPIDERMAN = Buffer.from('i am spiderman.');
const D1 = 'd69fc959dd3e23abac25fc9a7fee91aef9fad24bfb162227654bca21764c5b7d';
const D2 = '3a1af3ef2fa6a9f573277feb8a61655ae5d31499d5e7bc80dfc59004082787ac';

function frame(body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(4 + body.length);
  b.writeUInt32BE(body.length, 0);
  body.copy(b, 4);
  return b;
}

function lengthSpec(body: Buffer): MessageSpec {
  return { request: Buffer.alloc(0), reply: frame(body), replyBody: body, decodeFraming: { type: 'length' }, maxFrame: 1 << 20 };
}

/** Feed `stream` cut at `cuts` (sorted offsets); returns replies counted. */
function feed(v: ReplyVerifier, stream: Buffer, cuts: number[]): number {
  let n = 0;
  let at = 0;
  for (const c of [...cuts, stream.length]) {
    // A shared, reused read buffer, as the driver has: the verifier must not keep it.
    const chunk = Buffer.alloc(c - at + 8, 0xee);
    stream.copy(chunk, 3, at, c);
    n += v.push(chunk, 3, 3 + (c - at));
    chunk.fill(0xee);
    at = c;
  }
  return n;
}

describe('reply verification', () => {
  it('computes the bench-protocol reference vectors', () => {
    expect(expectedBenchReply(0, SPIDERMAN)).toEqual(SPIDERMAN);
    expect(expectedBenchReply(1, SPIDERMAN).toString('hex')).toBe(D1);
    expect(expectedBenchReply(2, SPIDERMAN).toString('hex')).toBe(D2);
  });

  it('builds [len][K][payload] requests and the expected reply frame once', () => {
    const m = buildMessage({ protocol: 'bench', iterations: 2, size: 5, framing: { type: 'length' }, maxFrame: 1 << 20 });
    expect(Buffer.from(m.request).toString('hex')).toBe('00000009' + '00000002' + Buffer.from('ahovc').toString('hex'));
    expect(m.reply.length).toBe(36);
    expect(Buffer.from(m.replyBody)).toEqual(expectedBenchReply(2, Buffer.from('ahovc')));
  });

  it('counts good replies split at every offset, with no mismatch', () => {
    for (const body of [SPIDERMAN, expectedBenchReply(1, SPIDERMAN)]) {
      const spec = lengthSpec(body);
      const stream = Buffer.concat(Array.from({ length: 5 }, () => spec.reply));
      for (let i = 0; i <= stream.length; i++) {
        for (const j of [i, Math.min(stream.length, i + 1), Math.min(stream.length, i + 23)]) {
          const v = new ReplyVerifier(spec);
          expect(feed(v, stream, [i, j])).toBe(5);
          expect(v.mismatches).toBe(0);
          expect(v.partial).toBe(0);
        }
      }
    }
  });

  it('a reply that differs by one byte is a mismatch; the stream resynchronises', () => {
    const spec = lengthSpec(expectedBenchReply(2, SPIDERMAN));
    const L = spec.reply.length;
    const good = Buffer.concat(Array.from({ length: 6 }, () => spec.reply));
    for (let bad = 0; bad < good.length; bad += 7) {
      if (bad % L < 4) continue; // a header byte changes the framing: next test
      const stream = Buffer.from(good);
      stream[bad] ^= 0x01;
      for (const cuts of [[], [bad], [bad + 1], [Math.max(0, bad - 3), bad + 40 > stream.length ? stream.length : bad + 40]]) {
        const v = new ReplyVerifier(spec);
        expect(feed(v, stream, cuts)).toBe(6);
        expect(v.mismatches).toBe(1);
        expect(v.partial).toBe(0);
        // And back on the fast path: more good replies count with no new mismatch.
        expect(v.push(Buffer.concat([spec.reply, spec.reply]))).toBe(2);
        expect(v.mismatches).toBe(1);
      }
    }
  });

  it('a reply of the wrong length is one mismatch, then good replies count again', () => {
    const spec = lengthSpec(expectedBenchReply(1, SPIDERMAN));
    const stream = Buffer.concat([spec.reply, frame(Buffer.from('short')), frame(Buffer.alloc(0)), spec.reply, spec.reply]);
    for (let i = 0; i <= stream.length; i++) {
      const v = new ReplyVerifier(spec);
      expect(feed(v, stream, [i])).toBe(5);
      expect(v.mismatches).toBe(2);
    }
  });

  it('an undecodable stream throws the framing error', () => {
    const spec = lengthSpec(SPIDERMAN);
    const v = new ReplyVerifier(spec);
    const bad = Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    expect(() => v.push(bad)).toThrow(expect.objectContaining({ code: 'SHOAL_FRAME_TOO_LARGE' }));
  });

  it('line framing: echoed lines verified, a wrong line counted', () => {
    const m = buildMessage({ protocol: 'echo', iterations: 0, size: 10, framing: { type: 'line' }, maxFrame: 1024 });
    expect(Buffer.from(m.reply).toString()).toBe('ahovcjqxel\n');
    const stream = Buffer.concat([Buffer.from(m.reply), Buffer.from('ahovcjqxeL\n'), Buffer.from(m.reply)]);
    for (let i = 0; i <= stream.length; i++) {
      const v = new ReplyVerifier(m);
      expect(feed(v, stream, [i])).toBe(3);
      expect(v.mismatches).toBe(1);
    }
  });

  it('raw framing: the echoed byte stream is counted in payload-sized replies', () => {
    const m = buildMessage({ protocol: 'echo', iterations: 0, size: 4, framing: { type: 'raw' }, maxFrame: 1024 });
    const v = new ReplyVerifier(m);
    const stream = Buffer.concat([m.reply, m.reply, m.reply].map((x) => Buffer.from(x)));
    expect(feed(v, stream, [1, 6, 7])).toBe(3);
    expect(v.mismatches).toBe(0);
  });

  it('large replies spanning many reads are compared across chunk boundaries', () => {
    const body = Buffer.alloc(300_000, 7);
    body[299_999] = 8;
    const spec = lengthSpec(body);
    const v = new ReplyVerifier(spec);
    const stream = Buffer.concat([spec.reply, spec.reply]);
    const cuts = [];
    for (let c = 65_536; c < stream.length; c += 65_536) cuts.push(c);
    expect(feed(v, stream, cuts)).toBe(2);
    expect(v.mismatches).toBe(0);
    const wrong = Buffer.from(stream);
    wrong[4 + 299_999] = 7;
    const w = new ReplyVerifier(spec);
    expect(feed(w, wrong, cuts)).toBe(2);
    expect(w.mismatches).toBe(1);
  });
});
