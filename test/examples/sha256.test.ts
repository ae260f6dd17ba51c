import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JS example module without type declarations
import { sha256, sha256Chain } from '../../examples/bench-protocol/sha256.js';

const ref = (payload: Uint8Array, k: number): Buffer => {
  let d = createHash('sha256').update(payload).digest();
  for (let i = 1; i < k; i++) d = createHash('sha256').update(d).digest();
  return d;
};

describe('the bench-protocol example SHA-256 (pure JS)', () => {
  it('matches the reference vectors of bench-protocol.md', () => {
    const p = Buffer.from('i am spiderman.');
    expect(sha256Chain(p, 1).toString('hex')).toBe('d69fc959dd3e23abac25fc9a7fee91aef9fad24bfb162227654bca21764c5b7d');
    expect(sha256Chain(p, 2).toString('hex')).toBe('3a1af3ef2fa6a9f573277feb8a61655ae5d31499d5e7bc80dfc59004082787ac');
  });

  it('matches node:crypto at every length around the block boundaries', () => {
    for (let n = 0; n <= 200; n++) {
      const p = Buffer.alloc(n, n % 251);
      expect(sha256(p).toString('hex'), `length ${n}`).toBe(createHash('sha256').update(p).digest('hex'));
    }
  });

  it('matches node:crypto for arbitrary payloads and chain lengths', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (p, k) => {
        expect(sha256Chain(p, k).equals(ref(p, k))).toBe(true);
      }),
      { numRuns: 200, seed: 42 },
    );
  });
});
