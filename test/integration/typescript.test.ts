import { describe, expect, it } from 'vitest';
import { FIXTURES, start } from '../helpers/server.js';
import { settle } from '../helpers/wire.js';

// TypeScript handlers (issue 14): .ts, .mts and .cts load through tsx in every worker and inline.
// Without tsx, and the stack traces under the CLI: test/cli/typescript.test.ts.

const TS = `${FIXTURES}typescript/`;

describe.each([2, 0])('a TypeScript handler, workers: %i', (workers) => {
  it('.ts loads, with the .ts modules it imports, and answers', async () => {
    const s = await start({ handler: `${TS}handler.ts`, workers, codec: 'utf8' });
    try {
      const c = await s.client();
      const replies = await Promise.all([c.request('echo:a'), c.request('echo:b')]);
      expect(replies.map(String)).toEqual(['ts:echo:a:0', 'ts:echo:b:1']);
    } finally {
      await s.close();
    }
  });

  it.each(['mts', 'cts'])('.%s loads', async (ext) => {
    const s = await start({ handler: `${TS}handler.${ext}`, workers, codec: 'utf8' });
    try {
      const c = await s.client();
      expect((await c.request('x')).toString()).toBe(`${ext}:x`);
    } finally {
      await s.close();
    }
  });

  it('a .ts file with a syntax error fails the load with SHOAL_HANDLER_LOAD_FAILED naming the file', async () => {
    const r = await settle(start({ handler: `${TS}broken.ts`, workers, codec: 'utf8' }));
    expect(!r.ok && r.error.code).toBe('SHOAL_HANDLER_LOAD_FAILED');
    expect(!r.ok && r.error.message).toContain('broken.ts');
  });
});

// In workers only: inline, vitest's own stack rewriting hides Node's source maps
// (test/cli/typescript.test.ts checks both modes as a user runs them).
describe('a TypeScript handler in workers', () => {
  it("a thrown error's stack names the .ts line (source maps)", async () => {
    const workers = 2;
    const s = await start({ handler: `${TS}handler.ts`, workers, codec: 'utf8', onHandlerError: 'error-frame' });
    const errors: { code: string; message: string; stack?: string }[] = [];
    s.server.on('handlerError', (e: { code: string; message: string; stack?: string }) => errors.push(e));
    try {
      const c = await s.client();
      const reply = JSON.parse((await c.request('throw:now')).toString()) as { error: Record<string, unknown> };
      // The client gets the code and message, never the stack.
      expect(reply.error).toEqual({ code: 'SHOAL_HANDLER_ERROR', message: 'thrown from handler.ts: now' });
      expect(errors).toHaveLength(1);
      expect(errors[0]!.stack).toMatch(/handler\.ts:17:\d+/);
    } finally {
      await s.close();
    }
  });
});
