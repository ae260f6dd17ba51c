import { describe, expect, it } from 'vitest';
import { encodeResp, resp } from '../dist/src/index.js';
import type { RespValue } from '../dist/src/index.js';
import { respValueEnd } from '../dist/src/framing/resp.js';
import { expectShoal } from './framing/helpers.js';

const wire = (v: RespValue): string => encodeResp(v).toString('latin1');

describe('RESP replies (src/resp.ts)', () => {
  it.each<[string, RespValue, string]>([
    ['a status', resp.simple('OK'), '+OK\r\n'],
    ['ok and pong', [resp.ok, resp.pong], '*2\r\n+OK\r\n+PONG\r\n'],
    ['an error, line breaks flattened', resp.error('ERR bad\r\nthing'), '-ERR bad thing\r\n'],
    ['integers: helper, number, bigint', [resp.integer(-3), 42, 9223372036854775807n], '*3\r\n:-3\r\n:42\r\n:9223372036854775807\r\n'],
    ['a string is a UTF-8 bulk string', 'héllo', '$6\r\nh\u00c3\u00a9llo\r\n'],
    ['bytes are a bulk string, any byte included', Buffer.from([0x0d, 0x0a, 0x00]), '$3\r\n\r\n\u0000\r\n'],
    ['resp.bulk of a string and of null', [resp.bulk('x'), resp.bulk(null)], '*2\r\n$1\r\nx\r\n$-1\r\n'],
    ['null is the null bulk string', null, '$-1\r\n'],
    ['the null array', resp.nullArray, '*-1\r\n'],
    ['an empty array', resp.array([]), '*0\r\n'],
    ['nested arrays', ['a', [1, [null]]], '*2\r\n$1\r\na\r\n*2\r\n:1\r\n*1\r\n$-1\r\n'],
  ])('%s', (_n, value, want) => {
    expect(wire(value)).toBe(want);
    // Each encoding is exactly one RESP value: what the RESP framing's encoder checks.
    const bytes = encodeResp(value);
    expect(respValueEnd(bytes, 0)).toBe(bytes.length);
  });

  it('refuses what RESP2 cannot carry, as handler errors', () => {
    expectShoal(() => resp.simple('a\r\nb'), 'SHOAL_HANDLER_ERROR');
    expectShoal(() => resp.integer(1.5), 'SHOAL_HANDLER_ERROR');
    expectShoal(() => encodeResp(1.5), 'SHOAL_HANDLER_ERROR');
    expectShoal(() => encodeResp(Number.MAX_SAFE_INTEGER + 1), 'SHOAL_HANDLER_ERROR');
    expectShoal(() => encodeResp(true as unknown as RespValue), 'SHOAL_HANDLER_ERROR');
    expectShoal(() => encodeResp([undefined] as unknown as RespValue), 'SHOAL_HANDLER_ERROR');
    expectShoal(() => encodeResp({ a: 1 } as unknown as RespValue), 'SHOAL_HANDLER_ERROR');
  });
});
