import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, freePort, runProgram, startProgram, startShoal, stopAll } from './helpers.js';
import type { Proc } from './helpers.js';

// examples/resp against the real Redis tools of Debian's redis-tools: redis-cli and
// redis-benchmark, with Debian's redis-server as the reference for every answer.
// shoal is started with exactly the README's command (plus a free loopback port): the
// codec and the affinity come from the module, the workers are the default (every core).
afterAll(stopAll);

let shoal: Proc & { port: number };
let redis: { port: number; proc: Proc };

beforeAll(async () => {
  shoal = await startShoal(['--framing', 'resp', '--handler', 'examples/resp/handler.js']);
  const port = await freePort();
  // No persistence: nothing is written to disk; bound to loopback.
  const proc = startProgram('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await proc.waitFor(/Ready to accept connections/);
  redis = { port, proc };
});

afterAll(async () => {
  await shoal?.stop('SIGTERM');
  await redis?.proc.stop('SIGTERM');
});

const cli = (port: number, args: string[], input?: string | Buffer) => runProgram('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { input });

describe('redis-cli', () => {
  it('answers a script of 56 commands exactly as redis-server does: values, nil, integers, errors, arrays', async () => {
    const script = readFileSync(`${ROOT}test/e2e/redis-cli-script.txt`);
    const want = await cli(redis.port, ['--no-raw'], script);
    const got = await cli(shoal.port, ['--no-raw'], script);
    expect(want.code).toBe(0);
    expect(got.code).toBe(0);
    expect(got.stdout.toString()).toBe(want.stdout.toString());
    // The script is the README's kind of session: make sure it really covered each reply type.
    const text = got.stdout.toString();
    for (const shape of ['(nil)', '(integer) 11', '(error) ERR wrong number of arguments', '(error) WRONGTYPE', "(error) ERR unknown command 'nosuchcommand'", '1) "z"', '(empty array)']) {
      expect(text).toContain(shape);
    }
  });

  it('stores and returns a 300 kB value (redis-cli -x)', async () => {
    const value = Buffer.alloc(300_000);
    for (let i = 0; i < value.length; i++) value[i] = 0x21 + ((i * 7) % 90);
    expect((await cli(shoal.port, ['-x', 'set', 'big'], value)).stdout.toString()).toBe('OK\n');
    expect((await cli(shoal.port, ['strlen', 'big'])).stdout.toString()).toBe('300000\n');
    const got = await cli(shoal.port, ['--raw', 'get', 'big']);
    expect(got.stdout.equals(Buffer.concat([value, Buffer.from('\n')]))).toBe(true);
  });

  it('inline commands (as telnet or nc send them) get the same bytes back as from redis-server', async () => {
    const input = 'PING\r\nSET "a b" "c d"\r\nGET "a b"\r\n\r\nDEL "a b"\r\nINCR inline:n\r\nECHO \'it\\\'s\'\r\nNOSUCH x\r\nGET\r\n';
    const nc = (port: number) => runProgram('nc', ['-q1', '127.0.0.1', String(port)], { input });
    const want = await nc(redis.port);
    const got = await nc(shoal.port);
    expect(got.stdout.toString()).toBe(want.stdout.toString());
    expect(got.stdout.toString()).toContain('+PONG\r\n+OK\r\n$3\r\nc d\r\n:1\r\n:1\r\n');
  });
});

describe('redis-benchmark', () => {
  it('runs ping, set, get and incr pipelined (-c 50 -P 16) with 0 errors, and the INCR counter is exact', async () => {
    await cli(shoal.port, ['del', 'counter:__rand_int__']);
    const n = 50_000;
    const r = await runProgram('redis-benchmark', ['-h', '127.0.0.1', '-p', String(shoal.port), '-c', '50', '-P', '16', '-n', String(n), '-t', 'ping,set,get,incr', '--csv'], { ms: 110_000 });
    expect(r.code).toBe(0);
    expect(r.stderr).not.toMatch(/error/i);
    const rows = r.stdout.toString().trim().split('\n').slice(1).map((l) => l.split(',')[0]!.replace(/"/g, ''));
    expect(rows).toEqual(['PING_INLINE', 'PING_MBULK', 'SET', 'GET', 'INCR']);
    // redis-benchmark's INCR (without -r) increments one key, counter:__rand_int__, n times.
    expect((await cli(shoal.port, ['get', 'counter:__rand_int__'])).stdout.toString()).toBe(`${n}\n`);
    expect((await cli(shoal.port, ['get', 'key:__rand_int__'])).stdout.toString()).toBe('VXK\n'); // its SET value
  });
});
