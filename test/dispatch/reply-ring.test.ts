import { MessageChannel } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { R_CLOSE, R_ERROR, R_OVERFLOW, R_REPLY, ReplyReader, ReplyWriter, createReplyRing } from '../../dist/src/dispatch/reply-ring.js';

// The reply ring's writer (a worker's side) and reader (the main thread's) round trip:
// every record comes out once, in order, byte-exact, across wrap-arounds and overflow.

function pair(bytes: number) {
  const ring = createReplyRing(bytes);
  const overflow = new MessageChannel();
  const doorbell = new Int32Array(new SharedArrayBuffer(8));
  const writer = new ReplyWriter(ring, overflow.port2, doorbell, 0, 1);
  const reader = new ReplyReader(ring, overflow.port1);
  return { writer, reader, doorbell, close: () => overflow.port1.close() };
}

describe('reply ring', () => {
  it('records of every size come out in order, byte-exact, across many wrap-arounds', () => {
    const { writer, reader, close } = pair(4096);
    const got: { slot: number; flags: number; body: Buffer; cost: number }[] = [];
    const sent: { slot: number; flags: number; body: Buffer }[] = [];
    let n = 0;
    for (let round = 0; round < 200; round++) {
      // A few records, then drain: sizes 0..1023 cross the end of the 4 KiB body at every offset.
      for (let k = 0; k < 3; k++) {
        const len = (n * 37) % 1024;
        const body = Buffer.alloc(len, n & 0xff);
        const flags = n % 5 === 0 ? R_REPLY | R_CLOSE : R_REPLY;
        writer.writeRecord(flags, n, body, n / 10);
        sent.push({ slot: n, flags, body });
        n++;
      }
      reader.drain((r) => got.push({ slot: r.slot, flags: r.flags, body: Buffer.from(r.bytes.subarray(r.start, r.start + r.length)), cost: r.costMs }));
    }
    expect(got.length).toBe(sent.length);
    got.forEach((g, i) => {
      expect(g.slot).toBe(sent[i]!.slot);
      expect(g.flags).toBe(sent[i]!.flags);
      expect(g.body.equals(sent[i]!.body)).toBe(true);
      expect(g.cost).toBeCloseTo(i / 10, 3);
    });
    close();
  });

  it('reserve/commit writes in place; a shorter commit than reserved is fine', () => {
    const { writer, reader, close } = pair(1024);
    const { buf, offset } = writer.reserve(100);
    buf.set(Buffer.from('hello'), offset);
    writer.commit(R_REPLY, 7, 5, 0);
    const out: string[] = [];
    reader.drain((r) => out.push(`${r.slot}:${r.bytes.toString('latin1', r.start, r.start + r.length)}`));
    expect(out).toEqual(['7:hello']);
    close();
  });

  it('a payload over a quarter of the ring goes through the overflow port, still in order', () => {
    const { writer, reader, close } = pair(4096);
    const big = Buffer.alloc(3000, 0xab);
    writer.writeRecord(R_ERROR, 1, Buffer.from('{"code":"X"}'), 0);
    writer.writeRecord(R_REPLY, 1, big, 0);
    writer.writeRecord(R_REPLY, 2, Buffer.from('small'), 0);
    const out: { slot: number; flags: number; len: number; same: boolean }[] = [];
    reader.drain((r) => out.push({ slot: r.slot, flags: r.flags, len: r.length, same: Buffer.from(r.bytes.subarray(r.start, r.start + r.length)).equals(r.slot === 1 && r.length === 3000 ? big : r.bytes.subarray(r.start, r.start + r.length)) }));
    expect(out.map((o) => [o.slot, o.len])).toEqual([[1, 12], [1, 3000], [2, 5]]);
    expect(out[1]!.flags & R_OVERFLOW).toBe(R_OVERFLOW);
    expect(out[1]!.same).toBe(true);
    close();
  });

  it('every write rings the doorbell; a parked reader is notified only when it says it waits', () => {
    const { writer, doorbell, close } = pair(1024);
    writer.writeRecord(R_REPLY, 0, Buffer.from('a'), 0);
    writer.ring();
    expect(Atomics.load(doorbell, 0)).toBe(1);
    Atomics.store(doorbell, 1, 1); // the reader is parked
    writer.ring();
    expect(Atomics.load(doorbell, 0)).toBe(2);
    expect(Atomics.load(doorbell, 1)).toBe(0); // the writer took the flag and notified
    close();
  });
});
