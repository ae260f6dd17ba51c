import { connect } from '../../dist/src/index.js';
import type { Client } from '../../dist/src/index.js';

/** A connection that awaits no replies: every frame it gets (replies and pushes, in arrival order) lands in `frames`. */
export interface Member {
  client: Client;
  frames: string[];
  /** Resolves once `frames` holds at least `n` frames; rejects after `timeoutMs` naming `what`. */
  until(n: number, what: string, timeoutMs?: number): Promise<void>;
  /** Resolves with the next frame after those already seen (e.g. a reply to `id`). */
  next(what: string): Promise<string>;
  send(line: string): void;
}

export async function member(port: number, framing?: Parameters<typeof connect>[0]['framing']): Promise<Member> {
  const frames: string[] = [];
  let waiters: (() => void)[] = [];
  let closed = false;
  const client = await connect({
    port,
    timeout: 20_000,
    framing,
    onUnsolicited: (frame) => {
      frames.push(frame.toString());
      wake();
    },
  });
  const wake = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  client.socket.once('close', () => {
    closed = true;
    wake();
  });
  const until = (n: number, what: string, timeoutMs = 20_000): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${frames.length}/${n} frames)`)), timeoutMs);
      const check = (): void => {
        if (frames.length >= n) {
          clearTimeout(timer);
          resolve();
        } else if (closed) {
          clearTimeout(timer);
          reject(new Error(`the connection closed while waiting for ${what} (${frames.length}/${n} frames)`));
        } else waiters.push(check);
      };
      check();
    });
  return {
    client,
    frames,
    until,
    async next(what) {
      const n = frames.length;
      await until(n + 1, what);
      return frames[n]!;
    },
    send: (line) => client.send(line),
  };
}

/** The texts of `frames` that start with `prefix`, in order. */
export function from(frames: string[], prefix: string): string[] {
  return frames.filter((f) => f.startsWith(prefix));
}
