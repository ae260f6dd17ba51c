import { fileURLToPath } from 'node:url';
import { connect, createServer } from '../../dist/src/index.js';
import type { Client, ClientOptions, ServerOptions, ShoalServer } from '../../dist/src/index.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const EXAMPLES = {
  echo: `${ROOT}examples/echo/handler.js`,
  bench: `${ROOT}examples/bench-protocol/handler.js`,
  json: `${ROOT}examples/json-routes/handler.js`,
  resp: `${ROOT}examples/resp/handler.js`,
};
export const FIXTURES = fileURLToPath(new URL('../fixtures/', import.meta.url));

export interface Running {
  server: ShoalServer;
  port: number;
  client(opts?: Partial<ClientOptions>): Promise<Client>;
  close(): Promise<void>;
}

/** Start a server on a free loopback port; close() is safe to call twice. */
export async function start(options: ServerOptions): Promise<Running> {
  const server = createServer({ drainTimeout: 5000, ...options });
  const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
  const clients: Client[] = [];
  return {
    server,
    port,
    async client(opts = {}) {
      const c = await connect({ port, timeout: 20_000, ...opts });
      clients.push(c);
      return c;
    },
    async close() {
      for (const c of clients) c.close();
      await server.close();
    },
  };
}

/** A bench-protocol request body: [u32 BE K][payload]. */
export function benchBody(k: number, payload: Uint8Array | string): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : Buffer.from(payload);
  const b = Buffer.allocUnsafe(4 + p.length);
  b.writeUInt32BE(k, 0);
  p.copy(b, 4);
  return b;
}
