/**
 * The pool's hand-off cost on the main thread, without sockets: N bench-protocol
 * messages through the dispatcher from in-process connections, a closed loop of
 * `--in-flight` messages, 2 workers. Reports messages/s and the main thread's busy
 * time per message (event-loop utilization), the figure the pool's design is about:
 * with cheap messages the main thread is the bottleneck.
 *
 *   node dist/bench/handoff.js [--messages 200000] [--in-flight 256] [--k 0] [--offload always]
 */
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createServer } from '../src/index.js';
import type { DispatchTarget } from '../src/dispatch/types.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '200000' },
    'in-flight': { type: 'string', default: '256' },
    k: { type: 'string', default: '0' },
    offload: { type: 'string', default: 'always' },
    workers: { type: 'string', default: '2' },
  },
});
const N = Number(values.messages);
const inFlight = Number(values['in-flight']);
const handler = fileURLToPath(new URL('../../examples/bench-protocol/handler.js', import.meta.url));
const server = createServer({ handler, workers: Number(values.workers), offload: values.offload as 'always' });
await server.listen({ host: '127.0.0.1', port: 0 });
const d = server.dispatcher;
const body = Buffer.alloc(64);
body.writeUInt32BE(Number(values.k), 0);
let sent = 0;
let done = 0;
let finish!: () => void;
const finished = new Promise<void>((r) => (finish = r));

class Peer implements DispatchTarget {
  lane: unknown = null;
  seq = 0;
  constructor(
    readonly id: number,
    readonly remoteAddress: string,
    readonly remotePort: number,
  ) {}
  deliver(_seq: number, count: number): void {
    done += count;
    if (sent < N) {
      sent++;
      d.submit(this, this.seq++, body);
    }
    if (done >= N) finish();
  }
}
const peers = Array.from({ length: 64 }, (_, i) => new Peer(i + 1, '127.0.0.1', 40_000 + i));
const elu0 = performance.eventLoopUtilization();
const t0 = performance.now();
for (let i = 0; i < inFlight && sent < N; i++) {
  const p = peers[i % peers.length]!;
  sent++;
  d.submit(p, p.seq++, body);
}
await finished;
const elu = performance.eventLoopUtilization(elu0);
const wall = performance.now() - t0;
console.log(
  JSON.stringify({
    messages: N,
    inFlight,
    k: Number(values.k),
    offload: values.offload,
    perSecond: Math.round((N / wall) * 1000),
    mainUsPerMessage: Number(((elu.active * 1000) / N).toFixed(2)),
    mainUtilization: Number(elu.utilization.toFixed(2)),
  }),
);
await server.close();
