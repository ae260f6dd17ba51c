import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { exchange, lengthFrame, splitLengthFrames } from '../helpers/wire.js';

// The json-routes example: [u32 BE route id][JSON] in, [same id][JSON] out.

function routed(id: number, body: unknown): Buffer {
  const json = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const out = Buffer.allocUnsafe(4 + json.length);
  out.writeUInt32BE(id, 0);
  json.copy(out, 4);
  return out;
}

function unroute(reply: Buffer): { id: number; body: unknown } {
  return { id: reply.readUInt32BE(0), body: JSON.parse(reply.subarray(4).toString()) };
}

describe.each([0, 2])('json-routes example, routing { idBytes: 4 }, codec json, workers: %i', (workers) => {
  let s: Running;
  beforeAll(async () => {
    s = await start({ handler: EXAMPLES.json, workers, codec: 'json', routing: { idBytes: 4 } });
  });
  afterAll(() => s.close());

  it('each message goes to the route of its id; the reply carries the same id', async () => {
    const c = await s.client();
    const [sum, greet, served, sum2] = await Promise.all([
      c.request(routed(1, { numbers: [1, 2, 3.5, -4] })),
      c.request(routed(2, { name: 'ada' })),
      c.request(routed(3, {})),
      c.request(routed(1, {})),
    ]);
    expect(unroute(sum!)).toEqual({ id: 1, body: { sum: 2.5 } });
    const g = unroute(greet!);
    expect(g.id).toBe(2);
    expect(g.body).toMatchObject({ greeting: 'hello, ada' });
    const connId = (g.body as { connection: number }).connection;
    expect([...s.server.connections].map((x) => x.id)).toContain(connId);
    const sv = unroute(served!);
    expect(sv.id).toBe(3);
    expect((sv.body as { served: number }).served).toBeGreaterThanOrEqual(1);
    expect(unroute(sum2!)).toEqual({ id: 1, body: { sum: 0 } });
  });

  it('an unknown route id closes the connection under the default policy, after earlier replies', async () => {
    const errors: string[] = [];
    const onErr = (e: { code: string }) => errors.push(e.code);
    s.server.on('handlerError', onErr);
    try {
      const wire = await exchange(s.port, [lengthFrame(routed(2, { name: 'x' })), lengthFrame(routed(99, {})), lengthFrame(routed(1, { numbers: [1] }))]);
      const frames = splitLengthFrames(wire);
      expect(frames.map((f) => unroute(f).id)).toEqual([2]);
      expect(errors).toEqual(['SHOAL_BAD_REQUEST']);
    } finally {
      s.server.off('handlerError', onErr);
    }
  });
});

describe('json-routes example under onHandlerError: error-frame', () => {
  it.each([0, 2])('workers: %i: a bad message gets the module errorReply() shape, the connection goes on', async (workers) => {
    const s = await start({ handler: EXAMPLES.json, workers, codec: 'json', routing: { idBytes: 4 }, onHandlerError: 'error-frame' });
    try {
      const c = await s.client();
      const [bad, unknown, tooShort, ok] = await Promise.all([
        c.request(routed(1, '{broken')), // not JSON
        c.request(routed(7, {})), // no route 7
        c.request(Buffer.from([0, 1])), // shorter than the 4-byte id
        c.request(routed(1, { numbers: [40, 2] })),
      ]);
      // A routed error reply carries the route id when there is one; errorReply() shapes the body.
      expect(unroute(bad!)).toMatchObject({ id: 1, body: { error: 'SHOAL_BAD_REQUEST' } });
      for (const r of [unknown!, tooShort!]) {
        const json = JSON.parse(r.subarray(r.indexOf('{')).toString()) as { error: string; message: string };
        expect(json.error).toBe('SHOAL_BAD_REQUEST');
        expect(typeof json.message).toBe('string');
      }
      expect(unroute(ok!)).toEqual({ id: 1, body: { sum: 42 } });
    } finally {
      await s.close();
    }
  });
});
