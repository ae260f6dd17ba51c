import { describe, expect, it } from 'vitest';
import { FairQueue } from '../../dist/src/dispatch/fair-queue.js';

const target = (id: number) => ({ id, remoteAddress: '', remotePort: 0, lane: null, deliver() {} });
const frame = (s: string) => Buffer.from(s);
/** Up to `n` frames taken with peekFrame() + shift(), as strings. */
const shiftFrames = (q: FairQueue, n = Infinity): string[] => {
  const got: string[] = [];
  for (let f = q.peekFrame(); f !== null && got.length < n; f = q.peekFrame()) {
    got.push(String(f));
    q.shift();
  }
  return got;
};

describe('FairQueue', () => {
  it('takes an equal share from each waiting connection, keeping each one in sequence order', () => {
    const q = new FairQueue();
    const heavy = target(1);
    const light = target(2);
    for (let i = 0; i < 100; i++) q.push(heavy, i, frame(`h${i}`));
    q.push(light, 0, frame('l0'));
    expect(q.size).toBe(101);
    const t = q.take(40, 1 << 20);
    // The light connection's only frame is in the first batch, not after 100 heavy ones;
    // the heavy one gives a whole turn's worth (32 frames) so its burst stays together.
    expect(t.frames.map(String)).toContain('l0');
    const heavySeqs = t.seqs.filter((_, k) => t.targets[k] === heavy);
    expect(heavySeqs).toEqual([...heavySeqs].sort((a, b) => a - b));
    expect(heavySeqs.length).toBeGreaterThanOrEqual(32);
    expect(t.frames.length).toBe(40);
    expect(q.size).toBe(61);
  });

  it('drains everything exactly once, in per-connection order, whatever the batch sizes', () => {
    const q = new FairQueue();
    const ts = [target(1), target(2), target(3)];
    const pushed = new Map(ts.map((t) => [t, [] as number[]]));
    for (let i = 0; i < 300; i++) {
      const t = ts[(i * 7) % 3]!;
      const seq = pushed.get(t)!.length;
      pushed.get(t)!.push(seq);
      q.push(t, seq, frame(`${t.id}:${seq}`));
    }
    const got = new Map(ts.map((t) => [t, [] as number[]]));
    for (let want = 1; q.size > 0; want = (want % 17) + 1) {
      const t = q.take(want, 1 << 20);
      expect(t.frames.length).toBeGreaterThan(0);
      expect(t.frames.length).toBeLessThanOrEqual(want);
      t.targets.forEach((tt, k) => got.get(tt)!.push(t.seqs[k]!));
    }
    for (const t of ts) expect(got.get(t)).toEqual(pushed.get(t));
    expect(q.bytes).toBe(0);
  });

  it('respects the byte cap but always takes at least one frame', () => {
    const q = new FairQueue();
    const t = target(1);
    q.push(t, 0, Buffer.alloc(100));
    q.push(t, 1, Buffer.alloc(100));
    expect(q.take(10, 50).frames.length).toBe(1);
    expect(q.take(10, 150).frames.length).toBe(1);
    expect(q.size).toBe(0);
  });

  it('requeued frames (a retry) go out first, before newer frames of the same connection', () => {
    const q = new FairQueue();
    const a = target(1);
    const b = target(2);
    q.push(a, 5, frame('a5'));
    q.push(b, 0, frame('b0'));
    q.requeue([a, a], [3, 4], [frame('a3'), frame('a4')]);
    expect(q.size).toBe(4);
    const t = q.take(4, 1 << 20);
    expect(t.targets[0]).toBe(a);
    const aSeqs = t.seqs.filter((_, k) => t.targets[k] === a);
    expect(aSeqs).toEqual([3, 4, 5]);
  });

  it('peekFrame()/shift() give the frames in take(1) order, and a peek takes nothing', () => {
    // Two queues fed the same pushes, with pushes between the takes: one drained by take(1),
    // the other by peek + shift. The pool's refill relies on their being the same.
    const byTake = new FairQueue();
    const byPeek = new FairQueue();
    const ts = [target(1), target(2), target(3), target(4)];
    const twins = ts.map((t) => target(t.id));
    const seqOf = new Map<number, number>();
    let rnd = 7;
    const next = () => (rnd = (rnd * 1103515245 + 12345) % 2147483648);
    const got: string[] = [];
    const want: string[] = [];
    for (let round = 0; round < 400; round++) {
      const k = next() % 4;
      const seq = seqOf.get(k) ?? 0;
      seqOf.set(k, seq + 1);
      const f = frame(`${k}:${seq}`);
      byTake.push(ts[k]!, seq, f);
      byPeek.push(twins[k]!, seq, f);
      if (next() % 3 === 0) continue; // let lanes grow
      const t = byTake.take(1, 1 << 20);
      want.push(`${t.targets[0]!.id}/${t.seqs[0]}/${String(t.frames[0])}`);
      const p = byPeek.peekFrame()!;
      expect(byPeek.peekFrame()).toBe(p); // peeking twice takes nothing
      got.push(`${byPeek.peekTarget().id}/${byPeek.peekSeq()}/${String(p)}`);
      byPeek.shift();
      expect(byPeek.size).toBe(byTake.size);
      expect(byPeek.bytes).toBe(byTake.bytes);
    }
    while (byTake.size > 0) {
      const t = byTake.take(1, 1 << 20);
      want.push(`${t.targets[0]!.id}/${t.seqs[0]}/${String(t.frames[0])}`);
      const p = byPeek.peekFrame()!;
      got.push(`${byPeek.peekTarget().id}/${byPeek.peekSeq()}/${String(p)}`);
      byPeek.shift();
    }
    expect(got).toEqual(want);
    expect(byPeek.peekFrame()).toBeNull();
    expect(byPeek.size).toBe(0);
    expect(byPeek.bytes).toBe(0);
  });

  it('shift() keeps a connection\'s turn for shiftQuantum frames, or until its lane is drained', () => {
    const q = new FairQueue(4);
    const a = target(1);
    const b = target(2);
    const c = target(3);
    for (let i = 0; i < 10; i++) q.push(a, i, frame(`a${i}`));
    for (let i = 0; i < 2; i++) q.push(b, i, frame(`b${i}`));
    for (let i = 0; i < 5; i++) q.push(c, i, frame(`c${i}`));
    expect(shiftFrames(q)).toEqual(['a0', 'a1', 'a2', 'a3', 'b0', 'b1', 'c0', 'c1', 'c2', 'c3', 'a4', 'a5', 'a6', 'a7', 'c4', 'a8', 'a9']);
    expect(q.size).toBe(0);
    expect(q.bytes).toBe(0);
  });

  it('a connection that had nothing waiting goes before those on their second turn, for one turn', () => {
    const q = new FairQueue(4);
    const a = target(1);
    const b = target(2);
    const light = target(3);
    const drain = (n: number) => shiftFrames(q, n);
    for (let i = 0; i < 10; i++) q.push(a, i, frame(`a${i}`));
    expect(drain(4)).toEqual(['a0', 'a1', 'a2', 'a3']); // a's first turn is over
    for (let i = 0; i < 10; i++) q.push(b, i, frame(`b${i}`));
    expect(drain(1)).toEqual(['b0']); // b is fresh: it goes before a's second turn
    q.push(light, 0, frame('l0'));
    // b keeps its turn; then the light one, ahead of a's and b's next turns.
    expect(drain(4)).toEqual(['b1', 'b2', 'b3', 'l0']);
    q.push(light, 1, frame('l1')); // its lane was drained: fresh again
    expect(drain(100)).toEqual(['l1', 'a4', 'a5', 'a6', 'a7', 'b4', 'b5', 'b6', 'b7', 'a8', 'a9', 'b8', 'b9']);
    // take() keeps the same turns.
    for (let i = 0; i < 40; i++) q.push(a, 10 + i, frame(`a${10 + i}`));
    expect(q.take(2, 1 << 20).seqs).toEqual([10, 11]);
    q.push(light, 2, frame('l2'));
    expect(q.take(1, 1 << 20).frames.map(String)).toEqual(['l2']);
  });

  it('clear() empties it and lanes can be reused', () => {
    const q = new FairQueue();
    const a = target(1);
    q.push(a, 0, frame('x'));
    q.clear();
    expect(q.size).toBe(0);
    expect(q.take(5, 100).frames).toEqual([]);
    q.push(a, 1, frame('y'));
    expect(q.take(5, 100).seqs).toEqual([1]);
  });
});
