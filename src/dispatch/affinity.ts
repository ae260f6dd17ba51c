/**
 * Which worker a message with affinity runs on (pure but for the connection table;
 * pool.ts asks). Shards are worker positions 0..workers-1: a position keeps its
 * shard when its worker is replaced, so a key always lands on the same position.
 *
 * - 'connection': a connection gets a shard at its first message, the least loaded
 *   one then (messages waiting or running there, then connections given so far), and
 *   keeps it for life.
 * - keyed: the handler module's affinityKey(frame) names a key; equal keys share a
 *   shard (a hash of the key, modulo the shards).
 */
import type { DispatchTarget } from './types.js';

export type AffinityMode = 'none' | 'connection';

/**
 * The key that names the main thread as a message's shard: it runs inline, in arrival
 * order, with the state the handler module keeps there (one keyspace in the I/O thread,
 * as Redis keeps its own; no hand-off per message). A registered symbol, so a module that
 * loads shoal by another path still names the same key.
 */
export const MAIN_THREAD: unique symbol = Symbol.for('shoal.mainThread') as never;

/** What a handler module's affinityKey() may return: null/undefined means "no affinity". */
export type AffinityKeyValue = string | number | Uint8Array | typeof MAIN_THREAD | null | undefined;
export type AffinityKeyFn = (frame: Buffer) => AffinityKeyValue;

/** FNV-1a, 32 bits: cheap, and spreads short keys well enough over a few shards. */
function fnv1a(key: string | Uint8Array): number {
  let h = 0x811c9dc5;
  if (typeof key === 'string') {
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  } else {
    for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  }
  return h >>> 0;
}

/** The shard of a key (`shards` >= 1). An integer key k >= 0 goes to shard k mod shards. */
export function shardOfKey(key: string | number | Uint8Array, shards: number): number {
  if (typeof key === 'number') {
    if (Number.isInteger(key) && key >= 0 && key <= 0xffffffff) return key % shards;
    return fnv1a(String(key)) % shards;
  }
  if (typeof key === 'string' || key instanceof Uint8Array) return fnv1a(key) % shards;
  return fnv1a(String(key)) % shards;
}

/** 'connection' affinity: each connection's shard, chosen by load at its first message. */
export class ConnectionShards {
  readonly #shards = new WeakMap<DispatchTarget, number>();
  /** Connections given to each shard so far (the tie-break). */
  readonly #given: Uint32Array;

  constructor(shards: number) {
    this.#given = new Uint32Array(shards);
  }

  /** `load(s)`: messages waiting or running on shard s now. */
  of(target: DispatchTarget, load: (shard: number) => number): number {
    const known = this.#shards.get(target);
    if (known !== undefined) return known;
    let best = 0;
    let bestLoad = Infinity;
    for (let s = 0; s < this.#given.length; s++) {
      const l = load(s);
      if (l < bestLoad || (l === bestLoad && this.#given[s]! < this.#given[best]!)) {
        best = s;
        bestLoad = l;
      }
    }
    this.#given[best]!++;
    this.#shards.set(target, best);
    return best;
  }
}
