import { describe, expect, it } from 'vitest';
import { createFraming } from '../../dist/src/framing/index.js';
import { P_BROADCAST, P_JOIN, P_LEAVE, P_SEND_TO, framePushes, pushesLength, readPushes, writePushes } from '../../dist/src/dispatch/push-wire.js';
import type { PushIntent } from '../../dist/src/dispatch/push-wire.js';

// The R_PUSH record's payload: written by a worker, read by the main thread (one format, both sides here).

const length = createFraming({ type: 'length' }, 1024);
const intents: PushIntent[] = [
  { op: P_JOIN, connectionId: 0, group: 'röom', body: null },
  { op: P_BROADCAST, connectionId: 0, group: 'röom', body: Buffer.from('to the room') },
  { op: P_BROADCAST, connectionId: 0, group: null, body: Buffer.from('to all') },
  { op: P_BROADCAST, connectionId: 0, group: '', body: Buffer.from('') },
  { op: P_SEND_TO, connectionId: 0xfffffffe, group: null, body: Buffer.from('direct') },
  { op: P_LEAVE, connectionId: 0, group: 'röom', body: null },
];

describe('push wire', () => {
  it('round-trips every kind of push, framed by the worker (bodies arrive framed)', () => {
    const n = pushesLength(intents, length.encoder);
    const buf = new Uint8Array(new SharedArrayBuffer(n + 8));
    expect(writePushes(intents, length.encoder, buf, 8)).toBe(n);
    const read = readPushes(buf, 8, n, null);
    expect(read).toEqual(framePushes(length, intents));
    expect(read.map((p) => [p.op, p.group, p.connectionId])).toEqual(intents.map((p) => [p.op, p.group, p.connectionId]));
    expect(read[1]!.bytes!.toString('hex')).toBe(Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('to the room')]).toString('hex'));
    // The record is copied out: the ring may reuse its bytes at once.
    buf.fill(0);
    expect(read[4]!.bytes!.subarray(4).toString()).toBe('direct');
  });

  it('bare bodies (a user framing: no encoder in the workers) are framed when read', () => {
    const bare = { frameLength: (n: number) => n, encodeInto: (b: Uint8Array, out: Uint8Array, off: number) => (out.set(b, off), b.length) };
    const line = createFraming({ type: 'line', maxLength: 100 }, 1024);
    const n = pushesLength(intents, bare);
    const buf = new Uint8Array(n);
    writePushes(intents, bare, buf, 0);
    const read = readPushes(buf, 0, n, line);
    expect(read[2]!.bytes!.toString()).toBe('to all\n');
    expect(read).toEqual(framePushes(line, intents));
  });

  it('a body over maxFrame throws before anything is written', () => {
    const big: PushIntent[] = [{ op: P_BROADCAST, connectionId: 0, group: null, body: Buffer.alloc(2000) }];
    expect(() => pushesLength(big, length.encoder)).toThrow(expect.objectContaining({ code: 'SHOAL_FRAME_TOO_LARGE' }));
    expect(() => framePushes(length, big)).toThrow(expect.objectContaining({ code: 'SHOAL_FRAME_TOO_LARGE' }));
  });
});
