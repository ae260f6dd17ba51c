// A typed shoal handler, run as TypeScript (no build step: shoal loads .ts through tsx,
// an optional peer dependency: npm install tsx).
// Start: npx shoal start --handler examples/typescript/handler.ts --framing line --codec json --on-handler-error error-frame --port 7000
// Try:   printf '{"op":"add","numbers":[1,2,3]}\n' | nc -q1 127.0.0.1 7000    ->  {"sum":6}
import type { HandlerFor, SetupInfo } from 'shoal';
import { add, shout } from './ops.js';
import type { Request, Response } from './ops.js';

let worker = -1;

export function setup({ threadId }: SetupInfo): void {
  worker = threadId;
}

/** One JSON request per line, one JSON reply per line. */
const handler: HandlerFor<'json', Request> = (req, ctx): Response => {
  switch (req.op) {
    case 'add':
      return { sum: add(req.numbers) };
    case 'shout':
      return { text: shout(req.text), worker, connection: ctx.connectionId };
    default:
      // Under --on-handler-error error-frame the client gets {"error":{"code","message"}};
      // the server's log shows this error's stack, which names this .ts line.
      throw new Error(`unknown op ${JSON.stringify((req as { op?: unknown }).op)}`);
  }
};

export default handler;
