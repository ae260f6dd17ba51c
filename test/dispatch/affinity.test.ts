import { describe, expect, it } from 'vitest';
import { ConnectionShards, shardOfKey } from '../../dist/src/dispatch/affinity.js';

describe('shardOfKey', () => {
  it('equal keys share a shard whatever their type; integers go to k mod shards', () => {
    expect(shardOfKey('user:42', 4)).toBe(shardOfKey('user:42', 4));
    expect(shardOfKey(Buffer.from('abc'), 3)).toBe(shardOfKey(new Uint8Array([97, 98, 99]), 3));
    expect(shardOfKey(7, 4)).toBe(3);
    expect(shardOfKey(1.5, 4)).toBe(shardOfKey(1.5, 4));
    for (let i = 0; i < 100; i++) expect(shardOfKey(`k${i}`, 5)).toBeLessThan(5);
  });

  it('spreads many keys over the shards', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 4000; i++) counts[shardOfKey(`key:${i}`, 4)]!++;
    for (const c of counts) expect(c).toBeGreaterThan(800);
  });
});

describe('ConnectionShards', () => {
  const target = (id: number) => ({ id, remoteAddress: '127.0.0.1', remotePort: 1, deliver() {}, lane: null });

  it('gives a new connection the least loaded shard, then the one given fewest connections, and keeps it', () => {
    const load = [5, 0, 0];
    const shards = new ConnectionShards(3);
    const a = target(1);
    expect(shards.of(a, (s) => load[s]!)).toBe(1);
    expect(shards.of(target(2), (s) => load[s]!)).toBe(2); // tie on load: fewer connections given
    load[1] = 9;
    expect(shards.of(a, (s) => load[s]!)).toBe(1); // kept for life
    expect(shards.of(target(3), (s) => load[s]!)).toBe(2);
  });
});
