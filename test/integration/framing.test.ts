import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { exchange, rawConnect, sleep, within } from '../helpers/wire.js';
import type { BuiltinFramingOptions, FrameDecoder, Framing } from '../../dist/src/index.js';

// Every built-in framing end to end over a socket, under each codec, for
// `workers: 0` and `workers: 2`. Expected wire bytes are built here by hand,
// not with shoal's encoders, so an encoder and decoder that agree on a wrong
// format still fail.

const PROBE = fileURLToPath(new URL('../fixtures/codec-probe.js', import.meta.url));
const MULTI = fileURLToPath(new URL('../fixtures/multi.js', import.meta.url));
const REVERSE = fileURLToPath(new URL('../fixtures/reverse.js', import.meta.url));

interface Case {
  name: string;
  framing: BuiltinFramingOptions;
  /** The wire bytes of one frame carrying `body`, written independently of shoal. */
  wire(body: Buffer): Buffer;
  /** The wire bytes shoal must write for a reply `body` (differs from `wire` where the encoder fills a header with zeros). */
  reply?(body: Buffer): Buffer;
}

const u16le = (n: number): Buffer => Buffer.from([n & 0xff, n >> 8]);
const u24be = (n: number): Buffer => Buffer.from([n >> 16, (n >> 8) & 0xff, n & 0xff]);

const CASES: Case[] = [
  {
    // Netty: 2 bytes before the field, 2-byte little-endian field counting the WHOLE frame.
    name: 'length (offset 2, 2-byte LE field, adjustment -4: field counts the header)',
    framing: { type: 'length', lengthFieldOffset: 2, lengthFieldLength: 2, byteOrder: 'le', lengthAdjustment: -4 },
    wire: (b) => Buffer.concat([Buffer.from([0xca, 0xfe]), u16le(b.length + 4), b]),
    reply: (b) => Buffer.concat([Buffer.from([0, 0]), u16le(b.length + 4), b]),
  },
  {
    // 3-byte big-endian field that does not count 2 trailing bytes after the body.
    name: 'length (3-byte BE field, adjustment +2)',
    framing: { type: 'length', lengthFieldLength: 3, lengthAdjustment: 2 },
    wire: (b) => Buffer.concat([u24be(b.length - 2), b]),
  },
  {
    name: 'length (1-byte field)',
    framing: { type: 'length', lengthFieldLength: 1, maxFrame: 200 },
    wire: (b) => Buffer.concat([Buffer.from([b.length]), b]),
  },
  {
    name: 'line (CRLF in and out)',
    framing: { type: 'line', eol: '\r\n' },
    wire: (b) => Buffer.concat([b, Buffer.from('\r\n')]),
  },
  {
    name: 'delimiter (two-byte delimiter)',
    framing: { type: 'delimiter', delimiter: Buffer.from([0xff, 0x00]) },
    wire: (b) => Buffer.concat([b, Buffer.from([0xff, 0x00])]),
  },
];

describe.each([0, 2])('built-in framings end to end, workers: %i', (workers) => {
  describe.each(CASES)('$name', (c) => {
    describe.each(['raw', 'utf8'] as const)('codec %s', (codec) => {
      let s: Running;
      beforeAll(async () => {
        s = await start({ handler: PROBE, workers, framing: c.framing, codec });
      });
      afterAll(() => s.close());

      it('exact reply bytes on the wire for two frames sent in one write', async () => {
        // For the +2 adjustment case bodies must be >= 2 bytes; all of these are.
        const bodies = [Buffer.from('hello'), Buffer.from('wörld ✓')];
        const got = await exchange(s.port, Buffer.concat(bodies.map(c.wire)));
        const enc = c.reply ?? c.wire;
        const want = Buffer.concat(bodies.map((b) => enc(Buffer.concat([Buffer.from(`${codec}:`), b]))));
        expect(got.toString('hex')).toBe(want.toString('hex'));
      });

      it('the shipped client with the same framing: 100 pipelined requests', async () => {
        const cl = await s.client({ framing: c.framing });
        const replies = await Promise.all(Array.from({ length: 100 }, (_, i) => cl.request(`msg-${i}`)));
        expect(replies.map((r) => r.toString())).toEqual(Array.from({ length: 100 }, (_, i) => `${codec}:msg-${i}`));
      });
    });
  });

  describe('fixed length (6 bytes), codecs raw and utf8', () => {
    it.each(['raw', 'utf8'] as const)('codec %s: each 6-byte frame comes back reversed', async (codec) => {
      const s = await start({ handler: REVERSE, workers, framing: { type: 'fixed', frameLength: 6 }, codec });
      try {
        // Three frames, the last one split across two writes.
        const got = await exchange(s.port, [Buffer.from('abcdefghijklmno'), Buffer.from('pqr')]);
        expect(got.toString()).toBe('fedcbalkjihgrqponm');
        const cl = await s.client({ framing: { type: 'fixed', frameLength: 6 } });
        expect((await cl.request('123456')).toString()).toBe('654321');
      } finally {
        await s.close();
      }
    });

    it('a reply of the wrong size is a handler error: under error-frame nothing is written, the connection goes on', async () => {
      const s = await start({ handler: MULTI, workers, framing: { type: 'fixed', frameLength: 6 }, onHandlerError: 'error-frame' });
      const errors: string[] = [];
      s.server.on('handlerError', (e: { code: string }) => errors.push(e.code));
      try {
        // "one:ab" asks for the 2-byte reply "ab": it cannot be a 6-byte frame (nor can a JSON error frame).
        const got = await exchange(s.port, Buffer.from('one:abxyzxyz'));
        expect(got.toString()).toBe('xyzxyz');
        expect(errors).toEqual(['SHOAL_FRAME_INVALID']);
      } finally {
        await s.close();
      }
    });
  });

  describe('raw framing', () => {
    it.each(['raw', 'utf8'] as const)('codec %s: a chunk is a frame, the reply is written as is', async (codec) => {
      const s = await start({ handler: PROBE, workers, framing: { type: 'raw' }, codec });
      try {
        const cl = await s.client({ framing: { type: 'raw' } });
        // One request at a time: raw boundaries follow TCP reads.
        for (const m of ['one', 'two', 'three']) {
          expect((await cl.request(m)).toString()).toBe(`${codec}:${m}`);
        }
      } finally {
        await s.close();
      }
    });
  });

  describe('json codec', () => {
    it.each([
      ['length (default)', { type: 'length' }],
      ['line', { type: 'line' }],
    ] as const)('over %s framing: the handler sees the parsed value, its return value is JSON', async (_n, framing) => {
      const s = await start({ handler: PROBE, workers, framing, codec: 'json', onHandlerError: 'error-frame' });
      try {
        const cl = await s.client({ framing });
        const [a, b, c] = await Promise.all([
          cl.request('{"a":1,"b":[true,null,"x"]}'),
          cl.request('"just a string"'),
          cl.request('{not json'),
        ]);
        expect(JSON.parse(a.toString())).toEqual({ json: { a: 1, b: [true, null, 'x'] } });
        // A JSON string arrives as a JS string; a string return value is written as its UTF-8 bytes, unquoted.
        expect(b.toString()).toBe('utf8:just a string');
        expect(JSON.parse(c.toString())).toMatchObject({ error: { code: 'SHOAL_BAD_REQUEST' } });
        // The connection goes on after the bad request.
        expect(JSON.parse((await cl.request('[1,2]')).toString())).toEqual({ json: [1, 2] });
      } finally {
        await s.close();
      }
    });
  });
});

describe.each([0, 2])('default length framing details, workers: %i', (workers) => {
  let s: Running;
  beforeAll(async () => {
    s = await start({ handler: EXAMPLES.echo, workers });
  });
  afterAll(() => s.close());

  it('zero-length frames are frames: an empty body comes back as an empty frame', async () => {
    const got = await exchange(s.port, Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0x41, 0, 0, 0, 0]));
    expect(got.toString('hex')).toBe('00000000' + '0000000141' + '00000000');
  });

  it('frames trickled one byte per write are reassembled', async () => {
    const peer = await rawConnect(s.port);
    const bodies = ['a', '', 'trickle', 'x'.repeat(40)];
    const wire = Buffer.concat(bodies.map((b) => Buffer.concat([Buffer.from([0, 0, 0, b.length]), Buffer.from(b)])));
    for (const byte of wire) {
      peer.socket.write(Buffer.from([byte]));
      await sleep(0);
    }
    peer.socket.end();
    await within(peer.closed, 10_000, 'server closing after the trickle');
    expect(peer.received().toString('hex')).toBe(wire.toString('hex'));
  });

  it('a 512 KiB frame in many chunks comes back whole', async () => {
    const big = Buffer.alloc(512 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    const cl = await s.client();
    const reply = await cl.request(big);
    expect(reply.equals(big)).toBe(true);
  });
});

/**
 * A user-supplied framing: [0x02][u8 length][body][0x03], STX/ETX style.
 * Written here against the documented FrameDecoder contract, not with shoal's classes.
 */
class StxEtxDecoder implements FrameDecoder {
  consumed = 0;
  needed = 0;
  decode(buf: Buffer, offset: number): Buffer | null {
    const avail = buf.length - offset;
    if (avail < 2) {
      this.needed = 2;
      return null;
    }
    if (buf[offset] !== 0x02) throw Object.assign(new Error('expected STX'), { code: 'SHOAL_FRAME_INVALID' });
    const n = buf[offset + 1]!;
    if (avail < n + 3) {
      this.needed = n + 3;
      return null;
    }
    if (buf[offset + 2 + n] !== 0x03) throw Object.assign(new Error('expected ETX'), { code: 'SHOAL_FRAME_INVALID' });
    this.consumed = n + 3;
    return buf.subarray(offset + 2, offset + 2 + n);
  }
}

const stxEtx: Framing = {
  name: 'stx-etx',
  createDecoder: () => new StxEtxDecoder(),
  encoder: {
    frameLength(n: number): number {
      if (n > 255) throw new Error(`stx-etx frames hold at most 255 bytes (got ${n})`);
      return n + 3;
    },
    encodeInto(body: Uint8Array, out: Uint8Array, offset: number): number {
      out[offset] = 0x02;
      out[offset + 1] = body.length;
      out.set(body, offset + 2);
      out[offset + 2 + body.length] = 0x03;
      return body.length + 3;
    },
  },
};
const stx = (s: string): Buffer => Buffer.concat([Buffer.from([0x02, Buffer.byteLength(s)]), Buffer.from(s), Buffer.from([0x03])]);

describe.each([0, 2])('a user-supplied framing object, workers: %i', (workers) => {
  it.each(['raw', 'utf8'] as const)('codec %s: decoded and encoded by the user framing', async (codec) => {
    const s = await start({ handler: PROBE, workers, framing: stxEtx, codec });
    try {
      const got = await exchange(s.port, [stx('one'), Buffer.concat([stx(''), stx('three').subarray(0, 3)]), stx('three').subarray(3)]);
      expect(got.toString('hex')).toBe(Buffer.concat([stx(`${codec}:one`), stx(`${codec}:`), stx(`${codec}:three`)]).toString('hex'));
      const cl = await s.client({ framing: stxEtx });
      const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => cl.request(`m${i}`)));
      expect(replies.map(String)).toEqual(Array.from({ length: 50 }, (_, i) => `${codec}:m${i}`));
    } finally {
      await s.close();
    }
  });
});
