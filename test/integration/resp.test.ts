import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { EXAMPLES, FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { exchange, rawConnect, shaChain, waitFor, within } from '../helpers/wire.js';

// The Redis-compatible example (examples/resp/) driven by a real Redis client, ioredis,
// over real sockets, inline (workers: 0) and with workers (the keyspace on the main thread, HASHCHAIN in the pool).

const MiB = 1024 * 1024;

function client(port: number): Redis {
  // No reconnects and no offline queue: a dropped connection must fail the test, not be hidden.
  const r = new Redis({ port, host: '127.0.0.1', retryStrategy: () => null, maxRetriesPerRequest: 0, enableOfflineQueue: false, lazyConnect: true });
  r.on('error', () => {}); // errors surface through the commands' promises
  return r;
}

async function connected(port: number): Promise<Redis> {
  const r = client(port);
  await r.connect();
  return r;
}

/** Send raw bytes; resolve with everything the server sent once it closes (FIN) the connection. */
async function rawExchange(port: number, bytes: Buffer): Promise<Buffer> {
  const peer = await rawConnect(port);
  peer.socket.write(bytes);
  await within(peer.ended, 10_000, "the server's FIN");
  peer.socket.destroy();
  return peer.received();
}

describe.each([0, 2])('examples/resp with ioredis, workers: %i', (workers) => {
  let s: Running;
  let r: Redis;
  beforeAll(async () => {
    // 4 MiB frames: room for the 1 MiB values below (the example takes the rest from its module).
    s = await start({ handler: EXAMPLES.resp, framing: { type: 'resp' }, workers, maxFrame: 4 * MiB });
    r = await connected(s.port);
  });
  afterAll(async () => {
    r?.disconnect();
    await s?.close();
  });

  it('strings: values, nil, integers, SET options, expiry', async () => {
    await r.flushall();
    expect(await r.set('greeting', 'hello')).toBe('OK');
    expect(await r.get('greeting')).toBe('hello');
    expect(await r.get('missing')).toBeNull();
    expect(await r.append('greeting', ' world')).toBe(11);
    expect(await r.strlen('greeting')).toBe(11);
    expect(await r.incr('n')).toBe(1);
    expect(await r.incrby('n', 41)).toBe(42);
    expect(await r.decr('n')).toBe(41);
    expect(await r.incrby('big', '9223372036854775806')).toBe(9223372036854775806);
    expect(await r.call('incrby', 'big', '1')).toBe(9223372036854775807);
    await expect(r.incr('big')).rejects.toThrow('ERR increment or decrement would overflow');
    expect(await r.set('greeting', 'x', 'NX')).toBeNull();
    expect(await r.set('fresh', 'x', 'XX')).toBeNull();
    expect(await r.set('fresh', 'x', 'NX')).toBe('OK');
    expect(await r.set('ttl', 'x', 'EX', 100)).toBe('OK');
    expect(await r.ttl('ttl')).toBeGreaterThan(98);
    expect(await r.ttl('greeting')).toBe(-1);
    expect(await r.ttl('missing')).toBe(-2);
    expect(await r.set('short', 'x', 'PX', 30)).toBe('OK');
    await waitFor(async () => (await r.get('short')) === null, 'the PX 30 key to expire', 5000);
    expect(await r.exists('greeting', 'fresh', 'short', 'missing')).toBe(2);
    expect(await r.expire('fresh', 100)).toBe(1);
    expect(await r.expire('missing', 100)).toBe(0);
    expect(await r.mset('a', '1', 'b', '2')).toBe('OK');
    expect(await r.mget('a', 'missing', 'b')).toEqual(['1', null, '2']);
    expect(await r.del('a', 'b', 'missing')).toBe(2);
    expect(await r.dbsize()).toBe(5); // greeting, n, big, fresh, ttl
    expect(await r.echo('echo me')).toBe('echo me');
    expect(await r.ping()).toBe('PONG');
  });

  it('lists: push, pop, range', async () => {
    await r.flushall();
    expect(await r.rpush('l', 'b', 'c')).toBe(2);
    expect(await r.lpush('l', 'a', 'z')).toBe(4);
    expect(await r.lrange('l', 0, -1)).toEqual(['z', 'a', 'b', 'c']);
    expect(await r.lrange('l', -2, 100)).toEqual(['b', 'c']);
    expect(await r.lpop('l')).toBe('z');
    expect(await r.rpop('l')).toBe('c');
    expect(await r.lpop('l', 5)).toEqual(['a', 'b']);
    expect(await r.lpop('l')).toBeNull();
    expect(await r.exists('l')).toBe(0);
  });

  it("errors are Redis's: arity, wrong type, unknown command, not an integer, syntax", async () => {
    await r.set('s', 'text');
    await r.rpush('list', 'x');
    await expect(r.call('get')).rejects.toThrow("ERR wrong number of arguments for 'get' command");
    await expect(r.call('get', 'a', 'b')).rejects.toThrow("ERR wrong number of arguments for 'get' command");
    await expect(r.lpush('s', 'x')).rejects.toThrow('WRONGTYPE Operation against a key holding the wrong kind of value');
    await expect(r.get('list')).rejects.toThrow('WRONGTYPE');
    await expect(r.incr('s')).rejects.toThrow('ERR value is not an integer or out of range');
    await expect(r.call('set', 'k', 'v', 'BOGUS')).rejects.toThrow('ERR syntax error');
    await expect(r.call('nosuch', 'a', 'b')).rejects.toThrow("ERR unknown command 'nosuch', with args beginning with: 'a' 'b' ");
    // The connection is still good after error replies.
    expect(await r.get('s')).toBe('text');
  });

  it('command names in any case are found; names that are not 1-10 letters are unknown', async () => {
    await r.set('case', 'v');
    for (const name of ['GET', 'get', 'GeT', 'gEt']) expect(await r.call(name, 'case')).toBe('v');
    expect(await r.call('HashChain', '1', 'x')).toBe(shaChain(Buffer.from('x'), 1).toString('hex'));
    // One letter off (the case fold must not make these a known command), digits, other bytes, too long, empty.
    for (const name of ['gex', 'ge', 'gett', 'g3t', 'get\u0000', 'g@t', 'g[t', 'hashchains', 'flushallxyz', 'getgetgetget', '']) {
      await expect(r.call(name, 'case'), JSON.stringify(name)).rejects.toThrow(`ERR unknown command '${name}'`);
    }
  });

  it('pipelining: 2,000 mixed commands in one batch come back in order', async () => {
    await r.flushall();
    const p = r.pipeline();
    for (let i = 0; i < 500; i++) p.set(`k${i}`, `v${i}`).get(`k${i}`).incr('count').call('nosuch');
    const results = (await p.exec())!;
    expect(results).toHaveLength(2000);
    for (let i = 0; i < 500; i++) {
      expect(results[4 * i]).toEqual([null, 'OK']);
      expect(results[4 * i + 1]).toEqual([null, `v${i}`]);
      expect(results[4 * i + 2]).toEqual([null, i + 1]);
      expect(String(results[4 * i + 3]![0])).toMatch(/unknown command/);
    }
  });

  it('MULTI-less batches from 20 connections at once: every INCR counted once', async () => {
    await r.del('batched');
    const clients = await Promise.all(Array.from({ length: 20 }, () => connected(s.port)));
    try {
      await Promise.all(
        clients.map(async (c) => {
          for (let b = 0; b < 5; b++) {
            const p = c.pipeline();
            for (let i = 0; i < 100; i++) p.incr('batched');
            await p.exec();
          }
        }),
      );
    } finally {
      for (const c of clients) c.disconnect();
    }
    expect(await r.get('batched')).toBe('10000');
  });

  it('1 MiB values, binary keys and values round-trip exactly', async () => {
    const big = Buffer.alloc(MiB);
    for (let i = 0; i < big.length; i++) big[i] = (i * 131) & 0xff;
    expect(await r.set('big', big)).toBe('OK');
    expect((await r.getBuffer('big'))!.equals(big)).toBe(true);
    expect(await r.strlen('big')).toBe(MiB);
    const key = Buffer.from([0x00, 0x0d, 0x0a, 0xff, 0x24, 0x2a]);
    const value = Buffer.from([0x0d, 0x0a, 0x00, 0x2a, 0x31, 0x0d, 0x0a]);
    expect(await r.set(key, value)).toBe('OK');
    expect((await r.getBuffer(key))!.equals(value)).toBe(true);
    expect(await r.rpush(key.subarray(1), value, value)).toBe(2);
    expect((await r.lrangeBuffer(key.subarray(1), 0, -1)).map((b) => b.equals(value))).toEqual([true, true]);
  });

  it('HASHCHAIN computes the SHA-256 chain of its argument', async () => {
    expect(await r.call('hashchain', '1000', 'i am spiderman.')).toBe(shaChain(Buffer.from('i am spiderman.'), 1000).toString('hex'));
    await expect(r.call('hashchain', '0', 'x')).rejects.toThrow('ERR rounds must be an integer from 1 to 1000000');
  });

  it('a connection dropped mid-command changes nothing and harms no one else', async () => {
    await r.del('half');
    const peer = await rawConnect(s.port);
    peer.socket.write('*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10\r\nabc');
    peer.socket.destroy();
    await within(peer.closed, 5000, 'the dropped socket closing');
    expect(await r.get('half')).toBeNull();
    expect(await r.ping()).toBe('PONG');
  });

  it('a protocol error is answered -ERR Protocol error after what came before, then only that connection closes', async () => {
    const got = await rawExchange(s.port, Buffer.from('*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n:5\r\n*1\r\n$4\r\nPING\r\n'));
    expect(got.toString()).toBe("+PONG\r\n+PONG\r\n-ERR Protocol error: expected '$', got ':'\r\n");
    expect(await r.ping()).toBe('PONG');
  });

  it('*1000000000 and $4294967296 headers are refused at once, before any body is sent', async () => {
    // The server answers and closes while the peer has sent nothing past the header.
    const count = await rawExchange(s.port, Buffer.from('*1000000000\r\n'));
    expect(count.toString()).toMatch(/^-ERR Protocol error: invalid multibulk length \(1000000000 elements.*\r\n$/);
    const bulk = await rawExchange(s.port, Buffer.from('*2\r\n$3\r\nSET\r\n$4294967296\r\n'));
    expect(bulk.toString()).toMatch(/^-ERR Protocol error: invalid bulk length \(4294967296 bytes.*\r\n$/);
    expect(await r.ping()).toBe('PONG');
  });
});

describe('examples/resp keeps one keyspace across workers (on the main thread: the MAIN_THREAD affinity key), workers: 2', () => {
  it('200,000 INCRs of one key from 50 pipelining connections leave exactly 200000', async () => {
    const s = await start({ handler: EXAMPLES.resp, framing: { type: 'resp' }, workers: 2 });
    const clients = await Promise.all(Array.from({ length: 50 }, () => connected(s.port)));
    try {
      // The main thread's keyspace is the module's, shared by every server this process started.
      await clients[0]!.flushall();
      await Promise.all(
        clients.map(async (c) => {
          for (let b = 0; b < 10; b++) {
            const p = c.pipeline();
            for (let i = 0; i < 400; i++) p.incr('counter');
            const results = (await p.exec())!;
            for (const [err] of results) if (err) throw err;
          }
        }),
      );
      expect(await clients[0]!.get('counter')).toBe('200000');
      expect(await clients[1]!.dbsize()).toBe(1);
    } finally {
      for (const c of clients) c.disconnect();
      await s.close();
    }
  });
});

describe('the resp codec', () => {
  it("comes from the module's codec export; an explicit different codec fails the load", async () => {
    const s = await start({ handler: `${FIXTURES}resp-throws.js`, framing: { type: 'resp' }, workers: 0, onHandlerError: 'error-frame' });
    const r = await connected(s.port);
    try {
      expect(await r.call('ECHO', 'a', 'b')).toEqual(['ECHO', 'a', 'b']);
      // error-frame: a thrown error and a value RESP cannot carry become -ERR replies.
      await expect(r.call('THROW')).rejects.toThrow('ERR thrown by the handler');
      await expect(r.call('BAD')).rejects.toThrow(/ERR a RESP integer must be a safe integer/);
      expect(await r.call('ECHO')).toEqual(['ECHO']);
    } finally {
      r.disconnect();
      await s.close();
    }
    await expect(start({ handler: `${FIXTURES}resp-throws.js`, framing: { type: 'resp' }, workers: 0, codec: 'json' })).rejects.toMatchObject({
      code: 'SHOAL_HANDLER_LOAD_FAILED',
      message: expect.stringMatching(/exports codec 'resp' but the server's codec option is 'json'/),
    });
  });

  it.each([0, 2])('a handler error under the close policy closes only that connection, workers: %i', async (workers) => {
    const s = await start({ handler: `${FIXTURES}resp-throws.js`, framing: { type: 'resp' }, workers });
    const r = await connected(s.port);
    try {
      const got = await rawExchange(s.port, Buffer.from('PING\r\nTHROW\r\nPING\r\n'));
      expect(got.toString()).toBe('*1\r\n$4\r\nPING\r\n');
      expect(await r.call('ECHO', 'still')).toEqual(['ECHO', 'still']);
    } finally {
      r.disconnect();
      await s.close();
    }
  });
});

describe.each([0, 2])('a raw handler under the RESP framing, workers: %i', (workers) => {
  it('its valid RESP bytes go out as they are; bytes that are not one RESP value fail that message only', async () => {
    const s = await start({ handler: `${FIXTURES}resp-raw.js`, framing: { type: 'resp' }, workers, onHandlerError: 'error-frame' });
    try {
      const got = await exchange(s.port, Buffer.from('PING\r\nGET k\r\n*1\r\n$4\r\nPING\r\n'));
      // error-frame: the refused reply becomes the framing's own error line, and the connection goes on.
      expect(got.toString()).toMatch(/^\+PONG\r\n-ERR a reply of 8 bytes is not one RESP value[^\r\n]*\r\n\+PONG\r\n$/);
    } finally {
      await s.close();
    }
  });
});
