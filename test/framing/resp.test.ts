import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FrameReader, RespDecoder, commandIs, createFraming, parseCommand } from '../../dist/src/framing/index.js';
import type { Framing, RespFramingOptions } from '../../dist/src/framing/index.js';
import { resolveRespOptions, respValueEnd } from '../../dist/src/framing/resp.js';
import { bytes, decode, expectShoal, expectTable, hex, splitAt } from './helpers.js';

const MAX = 1024;
const respf = (o: Omit<RespFramingOptions, 'type'> = {}, max = MAX): Framing => createFraming({ type: 'resp', ...o }, max);
const strs = (...s: string[]) => s.map((x) => Buffer.from(x, 'latin1'));
/** A command as a RESP array of bulk strings, the way every Redis client sends it. */
const command = (...args: (string | Buffer)[]): Buffer =>
  Buffer.concat([
    Buffer.from(`*${args.length}\r\n`),
    ...args.flatMap((a) => {
      const b = typeof a === 'string' ? Buffer.from(a, 'latin1') : a;
      return [Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')];
    }),
  ]);

/** Push `input` one byte at a time; the index of the byte whose next() threw, and what was buffered then. */
function throwsAtByte(framing: Framing, input: Buffer): { at: number; err: unknown; buffered: number } {
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

describe('resp framing: BEFORE/AFTER', () => {
  const get = command('GET', 'k');
  const rows: Array<[string, Buffer, Buffer[]]> = [
    ['an array of bulk strings is one frame, bytes as sent', get, [get]],
    ['an inline command is its line without the EOL', bytes('"PING\\r\\n"'), strs('PING')],
    ['an inline command may end in a bare \\n', bytes('"SET a 1\\n"'), strs('SET a 1')],
    ['blank lines and empty arrays before a command are skipped', bytes('"\\r\\n*0\\r\\n  \\n*-1\\r\\nPING\\n"'), strs('PING')],
    ['a bulk may hold CR, LF and any byte', command('SET', bytes('"\\r\\n" 00 FF "\\r\\n"')), [command('SET', bytes('"\\r\\n" 00 FF "\\r\\n"'))]],
    ['an empty bulk', command('SET', 'k', ''), [command('SET', 'k', '')]],
    [
      'arrays and inline commands pipelined in one chunk',
      Buffer.concat([get, bytes('"PING\\r\\n"'), command('INCR', 'n'), bytes('"ECHO x\\n"')]),
      [get, ...strs('PING'), command('INCR', 'n'), ...strs('ECHO x')],
    ],
  ];
  it.each(rows)('%s', (_n, before, after) => expectTable(respf(), before, after));

  it('frames are views of the chunk, never copies', () => {
    const chunk = Buffer.concat([command('GET', 'a'), bytes('"PING\\r\\n"')]);
    const r = new FrameReader(respf().createDecoder());
    r.push(chunk);
    const out = [r.next(), r.next()];
    expect(out.map((f) => f!.buffer)).toEqual([chunk.buffer, chunk.buffer]);
    expect(r.next()).toBeNull();
  });

  it('asks for exactly the bytes of a bulk once its header is in (a large value is merged once)', () => {
    const d = new RespDecoder(resolveRespOptions({ type: 'resp' }, 1 << 20));
    const head = Buffer.from('*2\r\n$3\r\nSET\r\n$100000\r\n');
    expect(d.decode(head, 0)).toBeNull();
    expect(d.needed).toBe(head.length + 100_000 + 2);
  });

  it('end() inside a command is SHOAL_FRAME_TRUNCATED', () => {
    const got = decode(respf(), [command('GET', 'a'), Buffer.from('*2\r\n$3\r\nGET')]);
    expect(got.frames.map(hex)).toEqual([hex(command('GET', 'a'))]);
    expect(got.error).toBe('SHOAL_FRAME_TRUNCATED');
  });
});

describe('resp framing: protocol errors carry Redis messages', () => {
  const rows: Array<[string, string, string, RegExp]> = [
    ['a count that is not a number', '"*x\\r\\n"', 'SHOAL_FRAME_INVALID', /^Protocol error: invalid multibulk length$/],
    ['an element that is not a bulk string', '"*1\\r\\n:5\\r\\n"', 'SHOAL_FRAME_INVALID', /^Protocol error: expected '\$', got ':'$/],
    ['a negative bulk length', '"*1\\r\\n$-5\\r\\n"', 'SHOAL_FRAME_INVALID', /^Protocol error: invalid bulk length$/],
    ['a bulk not followed by CRLF', '"*1\\r\\n$1\\r\\nab\\r\\n"', 'SHOAL_FRAME_INVALID', /^Protocol error: expected CRLF after a bulk string$/],
    ['unbalanced quotes in an inline command', '"SET \\"a b\\r\\n"', 'SHOAL_FRAME_INVALID', /^Protocol error: unbalanced quotes in request$/],
    ['a count line without CR past 21 bytes', `"*${'9'.repeat(30)}"`, 'SHOAL_FRAME_INVALID', /^Protocol error: invalid multibulk length$/],
  ];
  it.each(rows)('%s', (_n, input, code, message) => {
    const got = decode(respf(), [bytes(input)]);
    expect(got.error).toBe(code);
    expect((got.err as Error).message).toMatch(message);
  });

  it('*1000000000 fails as soon as its header is in, with nothing buffered beyond it', () => {
    const input = Buffer.concat([Buffer.from('*1000000000\r\n'), Buffer.alloc(64, 0x24)]);
    const { at, err, buffered } = throwsAtByte(respf({}, 1 << 20), input);
    expect(at).toBe(12); // the '\n' ending the header
    expect(buffered).toBeLessThanOrEqual(13);
    expect((err as { code: string }).code).toBe('SHOAL_FRAME_TOO_LARGE');
    expect((err as Error).message).toMatch(/^Protocol error: invalid multibulk length/);
  });

  it('$4294967296 fails as soon as its header is in', () => {
    const input = Buffer.concat([Buffer.from('*2\r\n$3\r\nSET\r\n$4294967296\r\n'), Buffer.alloc(64, 0x61)]);
    const { at, err } = throwsAtByte(respf({}, 1 << 20), input);
    expect(at).toBe(Buffer.byteLength('*2\r\n$3\r\nSET\r\n$4294967296\r\n') - 1);
    expect((err as { code: string }).code).toBe('SHOAL_FRAME_TOO_LARGE');
    expect((err as Error).message).toMatch(/^Protocol error: invalid bulk length \(4294967296 bytes, maxBulkLength is 1048576\)/);
  });

  it('maxArrayLength and maxBulkLength are their own limits, below maxFrame', () => {
    expect(decode(respf({ maxArrayLength: 2 }), [command('A', 'b')]).error).toBeNull();
    expect(decode(respf({ maxArrayLength: 2 }), [command('A', 'b', 'c')]).error).toBe('SHOAL_FRAME_TOO_LARGE');
    expect(decode(respf({ maxBulkLength: 3 }), [command('SET', 'k', 'abc')]).error).toBeNull();
    expect(decode(respf({ maxBulkLength: 3 }), [command('SET', 'k', 'abcd')]).error).toBe('SHOAL_FRAME_TOO_LARGE');
  });

  it('maxFrame bounds the whole command, checked at each bulk header', () => {
    const max = 64;
    let ok = command('SET', 'k', '');
    for (let n = 1; ok.length < max; n++) ok = command('SET', 'k', 'v'.repeat(n));
    expect(ok.length).toBe(max);
    expect(decode(respf({}, max), [ok]).error).toBeNull();
    const big = command('SET', 'k', 'v'.repeat(max));
    const { at, err } = throwsAtByte(respf({}, max), big);
    expect((err as { code: string }).code).toBe('SHOAL_FRAME_TOO_LARGE');
    expect(at).toBe(big.indexOf('\r\n', big.indexOf('$64')) + 1); // at the header, before the value
    // A count whose smallest elements cannot fit fails at the count.
    expect(throwsAtByte(respf({}, max), Buffer.from('*11\r\n')).at).toBe(4);
  });

  it('an inline command over 64 KiB fails at 64 KiB + 1 bytes without a newline', () => {
    const { at, err } = throwsAtByte(respf({}, 1 << 20), Buffer.alloc(70_000, 0x61));
    expect(at).toBe(64 * 1024);
    expect((err as Error).message).toBe('Protocol error: too big inline request');
  });

  it('the framing answers a protocol error as Redis does: -ERR Protocol error: ...', () => {
    const f = respf();
    const err = decode(f, [bytes('"*1\\r\\n:5\\r\\n"')]).err as { code: string; message: string };
    expect(Buffer.from(f.errorReply!(err)).toString()).toBe("-ERR Protocol error: expected '$', got ':'\r\n");
    expect(Buffer.from(f.errorReply!({ code: 'SHOAL_FRAME_TRUNCATED', message: 'stream ended' })).toString()).toBe('-ERR Protocol error: stream ended\r\n');
    expect(Buffer.from(f.errorReply!({ code: 'SHOAL_HANDLER_ERROR', message: 'boom\r\nx' })).toString()).toBe('-ERR boom x\r\n');
  });

  it('options are validated with the values involved', () => {
    expectShoal(() => respf({ maxBulkLength: 2000 }), 'SHOAL_INVALID_OPTION');
    expectShoal(() => respf({ maxArrayLength: 0 }), 'SHOAL_INVALID_OPTION');
    expectShoal(() => respf({ maxFrame: 1.5 }), 'SHOAL_INVALID_OPTION');
  });
});

describe('resp framing: the encoder takes exactly one RESP value per reply', () => {
  const f = respf();
  const enc = (s: Buffer) => {
    const out = Buffer.alloc(f.encoder.frameLength(s.length));
    f.encoder.encodeInto(s, out, 0);
    return out;
  };
  it.each([
    ['+OK\r\n'],
    ['-ERR x\r\n'],
    [':-12\r\n'],
    ['$-1\r\n'],
    ['*-1\r\n'],
    ['$4\r\n\r\n\r\n\r\n'],
    ['*2\r\n*1\r\n$1\r\na\r\n:1\r\n'],
    ['*0\r\n'],
  ])('accepts %j', (s) => expect(enc(Buffer.from(s)).toString()).toBe(s));
  it.each([['+OK\r\n+OK\r\n'], ['+OK'], ['$3\r\nab\r\n'], ['*2\r\n:1\r\n'], ['hello'], [':x\r\n'], ['']])('refuses %j', (s) => {
    expectShoal(() => enc(Buffer.from(s)), 'SHOAL_FRAME_INVALID');
  });
  it('refuses a reply over maxFrame', () => {
    expectShoal(() => f.encoder.frameLength(MAX + 1), 'SHOAL_FRAME_TOO_LARGE');
  });
  it('walks nested arrays without recursion', () => {
    const deep = Buffer.from('*1\r\n'.repeat(100_000) + ':1\r\n');
    expect(respValueEnd(deep, 0)).toBe(deep.length);
  });
});

describe('parseCommand and commandIs', () => {
  it('gives the arguments of an array as views of the frame', () => {
    const frame = command('SET', bytes('00 0D 0A'), 'v');
    const args = parseCommand(frame);
    expect(args.map(hex)).toEqual([hex(Buffer.from('SET')), '000d0a', hex(Buffer.from('v'))]);
    expect(args[1]!.buffer).toBe(frame.buffer);
  });
  it.each([
    ['PING', ['PING']],
    ['  set  a   b ', ['set', 'a', 'b']],
    ['SET "a b" \'c d\'', ['SET', 'a b', 'c d']],
    ['ECHO "\\x41\\n\\"q\\""', ['ECHO', 'A\n"q"']],
    ["ECHO 'it\\'s'", ['ECHO', "it's"]],
    ['', []],
  ])('splits the inline command %j like redis', (line, want) => {
    expect(parseCommand(Buffer.from(line, 'latin1')).map((b) => b.toString('latin1'))).toEqual(want);
  });
  it('refuses what no framing would cut as a command', () => {
    expectShoal(() => parseCommand(Buffer.from('*2\r\n$3\r\nGET\r\n')), 'SHOAL_BAD_REQUEST');
    expectShoal(() => parseCommand(Buffer.from('ECHO "x')), 'SHOAL_FRAME_INVALID');
  });
  it('commandIs reads the name in place, in any case, in both forms', () => {
    expect(commandIs(command('HashChain', '1', 'x'), 'hashchain')).toBe(true);
    expect(commandIs(command('HASHCHAINS', '1'), 'hashchain')).toBe(false);
    expect(commandIs(command('GET', 'hashchain'), 'hashchain')).toBe(false);
    expect(commandIs(Buffer.from('  hashchain 1 x'), 'HASHCHAIN')).toBe(true);
    expect(commandIs(Buffer.from('PING'), 'hashchain')).toBe(false);
  });
});

describe('resp framing: any chunking gives the same frames (property)', () => {
  const RUNS = { numRuns: 300, seed: 20_261_201 };
  const arg = fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u));
  const word = fc.stringMatching(/^[A-Za-z0-9:_-]{1,12}$/);
  const cmd = fc.oneof(
    fc.array(arg, { minLength: 1, maxLength: 6 }).map((args) => ({ wire: command(...args), args })),
    fc.array(word, { minLength: 1, maxLength: 4 }).map((ws) => ({ wire: Buffer.from(`${ws.join(' ')}\r\n`), args: ws.map((w) => Buffer.from(w)) })),
  );
  it('frames and their parsed arguments do not depend on where the stream is split', () => {
    fc.assert(
      fc.property(fc.array(cmd, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 12 }), (cmds, cuts) => {
        const wire = Buffer.concat(cmds.map((c) => c.wire));
        const whole = decode(respf({}, 4096), [wire]);
        const split = decode(respf({}, 4096), splitAt(wire, cuts.map((c) => c % (wire.length + 1))));
        expect(whole.error).toBeNull();
        expect(split.error).toBeNull();
        expect(split.frames.map(hex)).toEqual(whole.frames.map(hex));
        expect(split.frames.map((f) => parseCommand(f).map(hex))).toEqual(cmds.map((c) => c.args.map(hex)));
      }),
      RUNS,
    );
  });

  // parseCommand takes the argument places the decoder recorded for the frame it cut last
  // on this thread: two connections cutting in turns, frames parsed at once or later (or
  // twice), commands split over reads and commands too long to record must all still
  // give their own arguments.
  it('arguments are right however cutting and parsing of two connections interleave', () => {
    const many = fc.array(arg, { minLength: 30, maxLength: 40 }).map((args) => ({ wire: command(...args), args }));
    const skipped = cmd.map((c) => ({ wire: Buffer.concat([Buffer.from('\r\n*0\r\n'), c.wire]), args: c.args }));
    const anyCmd = fc.oneof(cmd, cmd, many, skipped);
    const stream = fc.record({ cmds: fc.array(anyCmd, { minLength: 1, maxLength: 6 }), cuts: fc.array(fc.nat(), { maxLength: 8 }) });
    fc.assert(
      fc.property(stream, stream, fc.array(fc.nat(), { minLength: 1, maxLength: 64 }), (a, b, choices) => {
        const conns = [a, b].map((s) => {
          const wire = Buffer.concat(s.cmds.map((c) => c.wire));
          return { reader: new FrameReader(respf({}, 4096).createDecoder()), chunks: splitAt(wire, s.cuts.map((c) => c % (wire.length + 1))), want: s.cmds.map((c) => c.args.map(hex)), got: [] as (string[] | null)[] };
        });
        const deferred: { conn: (typeof conns)[number]; index: number; frame: Buffer }[] = [];
        let turn = 0;
        const choice = (): number => choices[turn++ % choices.length]!;
        while (conns.some((c) => c.chunks.length > 0)) {
          const picked = conns[choice() % 2]!;
          const conn = picked.chunks.length > 0 ? picked : conns.find((c) => c.chunks.length > 0)!;
          conn.reader.push(Buffer.from(conn.chunks.shift()!));
          for (let f = conn.reader.next(); f !== null; f = conn.reader.next()) {
            const index = conn.got.push(null) - 1;
            const how = choice() % 3;
            if (how === 0) conn.got[index] = parseCommand(f).map(hex);
            else if (how === 1) deferred.push({ conn, index, frame: f });
            else {
              conn.got[index] = parseCommand(f).map(hex);
              expect(parseCommand(f).map(hex)).toEqual(conn.got[index]);
            }
          }
          // Parse what waits now and then, between reads (after a command begun and not finished), not only at the end.
          if (choice() % 2 === 0) for (const d of deferred.splice(0)) d.conn.got[d.index] = parseCommand(d.frame).map(hex);
        }
        for (const d of deferred.reverse()) d.conn.got[d.index] = parseCommand(d.frame).map(hex);
        for (const c of conns) expect(c.got).toEqual(c.want);
      }),
      RUNS,
    );
  });
});
