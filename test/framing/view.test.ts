import { describe, expect, it } from 'vitest';
import { viewOf } from '../../dist/src/framing/view.js';

describe('viewOf', () => {
  const source = Buffer.from('xxhello worldyy', 'latin1');

  it('is a Buffer in every way a handler can ask', () => {
    const v = viewOf(source, 2, 13);
    expect(Buffer.isBuffer(v)).toBe(true);
    expect(v instanceof Buffer).toBe(true);
    expect(v.constructor).toBe(Buffer);
    expect(v.toString('latin1')).toBe('hello world');
    expect(v.equals(Buffer.from('hello world'))).toBe(true);
    expect(v.readUInt16BE(0)).toBe(0x6865);
    expect(v.toJSON()).toEqual(Buffer.from('hello world').toJSON());
    expect(Buffer.compare(v, Buffer.from('hello world'))).toBe(0);
    expect(Buffer.concat([v, v]).toString()).toBe('hello worldhello world');
    const sub = v.subarray(6);
    expect(Buffer.isBuffer(sub)).toBe(true);
    expect(sub.toString()).toBe('world');
  });

  it('shares the bytes of its source, from start to end', () => {
    const b = Buffer.from('abcdef');
    const v = viewOf(b, 1, 4);
    expect(v.length).toBe(3);
    expect(v.buffer).toBe(b.buffer);
    expect(v.byteOffset).toBe(b.byteOffset + 1);
    b[2] = 0x5a;
    expect(v.toString()).toBe('bZd');
    expect(viewOf(b, 3, 3).length).toBe(0);
  });

  it('keeps a view of a pooled Buffer inside that Buffer', () => {
    const pooled = Buffer.from('pooled bytes'); // cut from Node's shared 8 KiB pool
    expect(pooled.byteOffset).toBeGreaterThanOrEqual(0);
    const v = viewOf(pooled, 7, 12);
    expect(v.toString()).toBe('bytes');
    expect(v.byteOffset).toBe(pooled.byteOffset + 7);
  });
});
