import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../dist/src/index.js';
import type { Connection, ShoalError } from '../../dist/src/index.js';
import { start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { rawConnect, sleep, waitFor, within } from '../helpers/wire.js';
import { Canary, expectHealthy } from './canary.js';
import { ROOT } from './child.js';

// The framers fuzzed over real sockets: arbitrary bytes, cut into arbitrary
// chunks (each written separately, some after a pause so they arrive as separate
// reads), sent with or without a FIN, to a real server with 2 workers running an
// echo handler. A model of each framing predicts, for every input, the exact reply
// bytes and the one error the server must report (or none); the server must
// close the connection itself whenever the model says it must, FIN or not (that
// is the bound on buffering: past maxFrame it may not wait for more bytes).
//
// Both servers run on the test's main thread; the canary probes the length-framed
// one during both properties, so a main thread blocked by either would show.

const FUZZ_ECHO = `${ROOT}test/fixtures/hostile/fuzz-echo.js`;
const LENGTH_MAX = 64; // whole frame, header included
const LINE_MAX = 32; // bytes before the newline
const RUNS = 200;

/**
 * reply: every byte the server must send; error: the one connection error it must report.
 * refused: a reply the framing cannot carry (see modelLine): the handler-error policy
 * (close) ends the connection after the replies before it; frames after it may or may
 * not have been cut by then, so their errors are not predicted (only that they are documented).
 */
type Expected = { reply: Buffer; error: string | null; refused?: boolean };

/** [u32 BE length][body] frames, maxFrame over the whole frame; echo replies. */
function modelLength(bytes: Buffer): Expected {
  const replies: Buffer[] = [];
  let off = 0;
  while (bytes.length - off >= 4) {
    const len = bytes.readUInt32BE(off);
    if (4 + len > LENGTH_MAX) return { reply: Buffer.concat(replies), error: 'SHOAL_FRAME_TOO_LARGE' };
    if (bytes.length - off < 4 + len) break;
    replies.push(bytes.subarray(off, off + 4 + len)); // the echo of a frame is the frame
    off += 4 + len;
  }
  return { reply: Buffer.concat(replies), error: off < bytes.length ? 'SHOAL_FRAME_TRUNCATED' : null };
}

/** Lines ending in \n (a \r before it stripped), at most LINE_MAX bytes each; echo replies end in \n. */
function modelLine(bytes: Buffer): Expected {
  const replies: Buffer[] = [];
  let off = 0;
  for (;;) {
    const nl = bytes.indexOf(0x0a, off);
    if (nl < 0) {
      const rest = bytes.length - off;
      // An unterminated line fails once it is certainly too long (a final \r may still be stripped).
      const known = rest - (rest > 0 && bytes[bytes.length - 1] === 0x0d ? 1 : 0);
      if (known > LINE_MAX) return { reply: Buffer.concat(replies), error: 'SHOAL_FRAME_TOO_LARGE' };
      return { reply: Buffer.concat(replies), error: rest > 0 ? 'SHOAL_FRAME_TRUNCATED' : null };
    }
    let end = nl;
    if (end > off && bytes[end - 1] === 0x0d) end--;
    if (end - off > LINE_MAX) return { reply: Buffer.concat(replies), error: 'SHOAL_FRAME_TOO_LARGE' };
    // The echo of a line that still ends in \r after stripping one cannot be sent: the peer's
    // decoder would strip that \r too. The encoder refuses it (SHOAL_FRAME_INVALID as a
    // handler error) and the default policy closes the connection after the earlier replies.
    if (end > off && bytes[end - 1] === 0x0d) return { reply: Buffer.concat(replies), error: null, refused: true };
    replies.push(bytes.subarray(off, end), Buffer.from('\n'));
    off = nl + 1;
  }
}

/** A length near the limit half the time: the boundaries are where framers go wrong. */
const near = (max: number, lo: number, hi: number): fc.Arbitrary<number> => fc.oneof(fc.integer({ min: lo, max: hi }), fc.constantFrom(max - 1, max, max + 1));

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};

/** Bytes that often are, almost are, or are not length frames. */
const lengthBytes = fc
  .array(
    fc.oneof(
      // A frame, sometimes over the limit (a body of LENGTH_MAX - 4 is the largest legal one).
      near(LENGTH_MAX - 4, 0, LENGTH_MAX + 8).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })).map((body) => Buffer.concat([u32(body.length), body])),
      near(LENGTH_MAX - 4, 0, 2 * LENGTH_MAX).map(u32), // a bare header
      fc.constantFrom(0xffffffff, 0x80000000, 0x00010000).map(u32), // a hostile header
      fc.uint8Array({ maxLength: 48 }).map((b) => Buffer.from(b)), // noise
    ),
    { maxLength: 8 },
  )
  .map((parts) => Buffer.concat(parts));

/** Bytes other than \n, `n` of them. */
const lineBody = (n: number): fc.Arbitrary<Buffer> => fc.uint8Array({ minLength: n, maxLength: n }).map((b) => Buffer.from(b.map((x) => (x === 0x0a ? 0x2a : x))));

/**
 * Lines of any bytes but \n, often exactly at or one past LINE_MAX, ended by \n, \r\n, \r or
 * nothing; then, half the time, an unterminated tail (maybe ending in a \r that could still be
 * stripped).
 */
const lineBytes = fc
  .tuple(
    fc.array(fc.tuple(near(LINE_MAX, 0, LINE_MAX + 4).chain(lineBody), fc.constantFrom('\n', '\r\n', '\r', '', '\n')), { maxLength: 5 }),
    fc.option(fc.tuple(near(LINE_MAX, 0, LINE_MAX + 4).chain(lineBody), fc.boolean())),
  )
  .map(([lines, tail]) => {
    const parts = lines.flatMap(([body, end]) => [body, Buffer.from(end)]);
    if (tail) parts.push(Buffer.from('\n'), tail[0], Buffer.from(tail[1] ? '\r' : ''));
    return Buffer.concat(parts);
  });

/** Inputs fast-check once found, run every time. */
const LINE_EXAMPLES: Array<[Buffer, { cuts: number[]; pauses: boolean[]; fin: boolean }]> = [
  // Two refused lines (each still ends in \r after one is stripped) in one write: both may
  // be in batches before the first refusal closes the connection.
  [Buffer.from(`${'\0'.repeat(13)}\r\r\n${'\0'.repeat(31)}\r\r\n`, 'latin1'), { cuts: [], pauses: Array(7).fill(false), fin: false }],
];

/** Cut points (as fractions of the length), whether to pause before each chunk, and whether to send a FIN. */
const delivery = fc.record({
  cuts: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 }),
  pauses: fc.array(fc.boolean(), { minLength: 7, maxLength: 7 }),
  fin: fc.boolean(),
});

interface Observed {
  errors: Map<number, string[]>; // connection errors, by client port
  refused: Map<number, string[]>; // handler errors, by client port
  closed: Set<number>;
}

function observe(s: Running): Observed {
  const o: Observed = { errors: new Map(), refused: new Map(), closed: new Set() };
  // The peer's port, noted when the connection opens (test/hostile/scanners.cases.ts checks
  // that a closed connection still names its peer; this test is about framing).
  const portOf = new WeakMap<Connection, number>();
  const portOfId = new Map<number, number>();
  s.server.on('connection', (c: Connection) => {
    portOf.set(c, c.remotePort);
    portOfId.set(c.id, c.remotePort);
  });
  s.server.on('handlerError', (e: { code: string }, connId: number) => {
    const port = portOfId.get(connId)!;
    o.refused.set(port, [...(o.refused.get(port) ?? []), e.code]);
  });
  s.server.on('connectionError', (c: Connection, e: ShoalError) => {
    const port = portOf.get(c)!;
    o.errors.set(port, [...(o.errors.get(port) ?? []), e.code]);
  });
  s.server.on('connectionClose', (c: Connection) => o.closed.add(portOf.get(c)!));
  return o;
}

async function runOne(s: Running, o: Observed, model: (b: Buffer) => Expected, bytes: Buffer, d: { cuts: number[]; pauses: boolean[]; fin: boolean }): Promise<void> {
  const want = model(bytes);
  const peer = await rawConnect(s.port);
  const port = peer.socket.localPort!;
  // Ports are reused across runs (the kernel picks them with a random perturbation): forget
  // what an earlier connection from this port did. It is closed (each run waits for that),
  // and this one has sent nothing yet.
  o.errors.delete(port);
  o.refused.delete(port);
  o.closed.delete(port);
  const points = [...new Set(d.cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
  let from = 0;
  for (const [i, to] of [...points, bytes.length].entries()) {
    if (to <= from) continue;
    if (d.pauses[i]) await sleep(2); // a separate read on the server, most of the time
    peer.socket.write(bytes.subarray(from, to));
    from = to;
  }
  if (d.fin) peer.socket.end();
  if (d.fin || want.error === 'SHOAL_FRAME_TOO_LARGE' || want.refused) {
    // The server must close: after a FIN once all is answered, or on its own past maxFrame.
    await within(peer.ended, 3000, `the server closing (model: ${want.error ?? 'clean end'})`);
  } else {
    await waitFor(() => peer.received().length >= want.reply.length, `${want.reply.length} reply bytes`, 5000, 2);
    await sleep(5); // room for anything more the server should not send
  }
  expect(peer.received().toString('hex')).toBe(want.reply.toString('hex'));
  peer.socket.destroy();
  await waitFor(() => o.closed.has(port), 'the server-side close', 5000, 2);
  const codes = o.errors.get(port) ?? [];
  for (const code of codes) expect(Object.keys(ERROR_CODES)).toContain(code);
  if (want.refused) {
    // The first refusal is certain. Later lines of the same read may already be in a batch
    // when the policy closes the connection; they are refused too (each is its own handler
    // error), or cut before they ran: how many is a matter of timing, not of the model.
    const refused = o.refused.get(port) ?? [];
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const code of refused) expect(code).toBe('SHOAL_FRAME_INVALID');
    return;
  }
  // Without a FIN we end with a close of our own, so a partial frame left over is reported then.
  expect(codes).toEqual(want.error ? [want.error] : []);
  expect(o.refused.get(port)).toBeUndefined();
}

describe('framing fuzz over real sockets (fast-check, workers: 2)', () => {
  let length: Running;
  let line: Running;
  let lengthSeen: Observed;
  let lineSeen: Observed;
  let canary: Canary;
  beforeAll(async () => {
    length = await start({ handler: FUZZ_ECHO, workers: 2, maxFrame: LENGTH_MAX });
    line = await start({ handler: FUZZ_ECHO, workers: 2, framing: { type: 'line' }, maxFrame: LINE_MAX });
    lengthSeen = observe(length);
    lineSeen = observe(line);
    canary = await Canary.start(length.port);
  });
  afterAll(async () => {
    await canary?.stop().catch(() => {});
    await length?.close();
    await line?.close();
  });

  it('length framing: exact replies, exactly the predicted error code, a close whenever one is due', { timeout: 60_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(lengthBytes, delivery, (bytes, d) => runOne(length, lengthSeen, modelLength, bytes, d)),
      { numRuns: RUNS, interruptAfterTimeLimit: 40_000, markInterruptAsFailure: true },
    );
  });

  it('line framing: exact replies, exactly the predicted error code, a close whenever one is due', { timeout: 60_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(lineBytes, delivery, (bytes, d) => runOne(line, lineSeen, modelLine, bytes, d)),
      { numRuns: RUNS, interruptAfterTimeLimit: 40_000, markInterruptAsFailure: true, examples: LINE_EXAMPLES },
    );
  });

  it('after both: the servers are healthy and the canary never missed', async () => {
    for (const s of [length, line]) {
      const st = s.server.stats();
      expect(st.state).toBe('listening');
      expect(st.dispatcher.pendingFrames).toBe(0);
    }
    const c = await length.client();
    expect((await c.request('still here')).toString()).toBe('still here');
    const l = await rawConnect(line.port);
    l.socket.end('still here\n');
    await within(l.ended, 5000, 'the line server answering');
    expect(l.received().toString()).toBe('still here\n');
    expectHealthy(await canary.stop());
  });
});
