import { describe, expect, it } from 'vitest';
import { Arena, CHUNK_BYTES } from '../../dist/src/dispatch/arena.js';

describe('arena', () => {
  it('packs small messages into a chunk and frees the chunk when its last message is done', () => {
    const a = new Arena(4 * CHUNK_BYTES);
    const offs = Array.from({ length: 10 }, () => a.alloc(100));
    expect(offs).toEqual(Array.from({ length: 10 }, (_, i) => i * 100));
    for (const o of offs) a.free(o);
    // The current chunk stays current; more packing continues after what was used.
    expect(a.alloc(100)).toBe(1000);
  });

  it('a message held for long pins one chunk, not the buffer: the others keep being reused', () => {
    const a = new Arena(3 * CHUNK_BYTES);
    const held = a.alloc(CHUNK_BYTES - 10); // fills chunk 0
    for (let i = 0; i < 1000; i++) {
      const o = a.alloc(CHUNK_BYTES / 2);
      expect(o).toBeGreaterThanOrEqual(CHUNK_BYTES); // never in the held chunk
      a.free(o);
    }
    a.free(held);
    // Chunk 0 is free again (once it is no longer the current chunk) and is the lowest.
    const big = a.alloc(2 * CHUNK_BYTES);
    expect(big).toBeGreaterThanOrEqual(0);
  });

  it('a message larger than a chunk takes a run of free chunks; none when fragmented, then again', () => {
    const a = new Arena(4 * CHUNK_BYTES);
    const run = a.alloc(2 * CHUNK_BYTES + 1); // 3 chunks
    expect(run).toBe(0);
    expect(a.alloc(2 * CHUNK_BYTES)).toBe(-1); // one chunk left
    const small = a.alloc(10);
    expect(small).toBe(3 * CHUNK_BYTES);
    expect(a.alloc(CHUNK_BYTES)).toBe(-1);
    a.free(run);
    expect(a.alloc(3 * CHUNK_BYTES)).toBe(0);
  });
});
