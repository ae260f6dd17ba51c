import { connect } from '../../dist/src/index.js';
import type { Client } from '../../dist/src/index.js';

/** What one connection of a pipelined load saw, in reply order. */
export interface LoadConnection {
  client: Client;
  /** Reply bodies as text, in the order they arrived. */
  replies: string[];
  /** Errors of requests (a failed request stops that connection). */
  errors: Error[];
  /** Whether the server closed the socket under the load. */
  closed: boolean;
}

export interface PipelinedLoad {
  conns: LoadConnection[];
  /** Resolves once every connection has at least `n` replies matching `test` (or fails). */
  until(test: (reply: string) => boolean, n: number, what: string, timeoutMs?: number): Promise<void>;
  /** Stop sending; resolves when every request out has been answered. */
  stop(): Promise<void>;
}

/**
 * `conns` connections, each keeping `depth` requests in flight until stop():
 * request i of connection c has the body `c:i`. Bounded: stop() is required, and
 * until() gives up after its timeout.
 */
export async function pipelinedLoad(port: number, conns: number, depth: number): Promise<PipelinedLoad> {
  let stopping = false;
  const out: LoadConnection[] = [];
  const loops: Promise<void>[] = [];
  const waiters: (() => void)[] = [];
  for (let c = 0; c < conns; c++) {
    const client = await connect({ port, timeout: 20_000 });
    const conn: LoadConnection = { client, replies: [], errors: [], closed: false };
    client.socket.once('close', () => (conn.closed = true));
    out.push(conn);
    let next = 0;
    const lane = async (): Promise<void> => {
      while (!stopping && conn.errors.length === 0) {
        const i = next++;
        try {
          const reply = await client.request(`${c}:${i}`);
          conn.replies.push(reply.toString());
        } catch (err) {
          conn.errors.push(err as Error);
        }
        for (const w of waiters.splice(0)) w();
      }
    };
    // `depth` lanes share one connection: requests pipeline, replies come back in order.
    for (let d = 0; d < depth; d++) loops.push(lane());
  }
  return {
    conns: out,
    until(test, n, what, timeoutMs = 20_000) {
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
        // Counted incrementally: a check runs after every reply.
        const scanned = out.map(() => 0);
        const counts = out.map(() => 0);
        const check = (): void => {
          out.forEach((c, k) => {
            for (; scanned[k]! < c.replies.length; scanned[k]!++) if (test(c.replies[scanned[k]!]!)) counts[k]!++;
          });
          const errors = out.flatMap((c) => c.errors);
          if (errors.length > 0) {
            clearTimeout(timer);
            reject(errors[0]);
            return;
          }
          if (counts.every((count) => count >= n)) {
            clearTimeout(timer);
            resolve();
            return;
          }
          waiters.push(check);
        };
        check();
      });
    },
    async stop() {
      stopping = true;
      await Promise.all(loops);
    },
  };
}
