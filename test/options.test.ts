import { describe, expect, it } from 'vitest';
import { DEFAULTS, resolveOptions } from '../dist/src/options.js';

const handler = '/tmp/h.js';
const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
};

describe('resolveOptions', () => {
  it('fills every default from the one DEFAULTS object', () => {
    const o = resolveOptions({ handler, workers: 2 });
    expect(o.maxFrame).toBe(DEFAULTS.maxFrame);
    expect(o.sendHighWater).toBe(DEFAULTS.sendHighWater);
    expect(o.drainTimeout).toBe(DEFAULTS.drainTimeout);
    expect(o.framing.name).toBe('length');
    expect(o.handlerUrl).toBe('file:///tmp/h.js');
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
  });

  it('no budget defaults to Infinity', () => {
    for (const [key, value] of Object.entries(DEFAULTS)) {
      if (typeof value === 'number') expect(Number.isFinite(value), key).toBe(true);
    }
  });

  it('rejects unknown keys with a did-you-mean hint', () => {
    expect(() => resolveOptions({ handler, maxFrme: 10 } as never)).toThrow(/unknown option 'maxFrme' \(did you mean 'maxFrame'\?\)/);
  });

  it('rejects bad values with SHOAL_INVALID_OPTION and names the value', () => {
    expect(code(() => resolveOptions({ handler, workers: -1 }))).toBe('SHOAL_INVALID_OPTION');
    expect(code(() => resolveOptions({ handler, codec: 'xml' as never }))).toBe('SHOAL_INVALID_OPTION');
    expect(code(() => resolveOptions({ handler, onHandlerError: 'ignore' as never }))).toBe('SHOAL_INVALID_OPTION');
    expect(code(() => resolveOptions({ handler, maxFrame: 0 }))).toBe('SHOAL_INVALID_OPTION');
    expect(() => resolveOptions({ handler, sendLowWater: 10, sendHighWater: 5 })).toThrow(/sendLowWater \(10\) must not exceed sendHighWater \(5\)/);
    expect(code(() => resolveOptions({ handler: '' }))).toBe('SHOAL_INVALID_OPTION');
    expect(code(() => resolveOptions({ handler, framing: { type: 'nope' } as never }))).toBe('SHOAL_INVALID_OPTION');
    expect(code(() => resolveOptions({ handler, routing: { idBytes: 3 as never } }))).toBe('SHOAL_INVALID_OPTION');
  });

  it('sendQueueLimit: 16 MiB, following sendHighWater x 16 when not given; given, never below sendHighWater', () => {
    expect(resolveOptions({ handler }).sendQueueLimit).toBe(16 * 1024 * 1024);
    expect(resolveOptions({ handler, sendHighWater: 4 * 1024 * 1024 }).sendQueueLimit).toBe(64 * 1024 * 1024);
    expect(resolveOptions({ handler, sendQueueLimit: 2 * 1024 * 1024 }).sendQueueLimit).toBe(2 * 1024 * 1024);
    expect(() => resolveOptions({ handler, sendQueueLimit: 1000, sendHighWater: 5000, sendLowWater: 10 })).toThrow(/sendQueueLimit \(1000\) must not be below sendHighWater \(5000\)/);
  });

  it('framing maxFrame defaults to the server maxFrame', () => {
    const o = resolveOptions({ handler, maxFrame: 100, framing: { type: 'line' } });
    expect(() => o.framing.encoder.frameLength(101)).toThrow(/exceeds the maximum of 100/);
  });
});

describe('backlog', () => {
  it('defaults to 4096 and is validated', () => {
    expect(resolveOptions({ handler, workers: 0 }).backlog).toBe(4096);
    expect(resolveOptions({ handler, workers: 0, backlog: 128 }).backlog).toBe(128);
    expect(code(() => resolveOptions({ handler, backlog: 0 }))).toBe('SHOAL_INVALID_OPTION');
  });

  it('reaches the listening socket: the kernel reports it as the listener\'s maximum accept queue', async () => {
    const { createServer } = await import('../dist/src/index.js');
    const { execFileSync } = await import('node:child_process');
    const { fileURLToPath } = await import('node:url');
    const server = createServer({ handler: fileURLToPath(new URL('../examples/echo/handler.js', import.meta.url)), workers: 0, backlog: 7 });
    const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
    try {
      // `ss -ltn`: for a listening socket, Send-Q is its maximum accept queue.
      const line = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim();
      const sendQ = Number(line.split(/\s+/)[2]);
      expect(sendQ).toBe(7);
    } finally {
      await server.close();
    }
  });
});
