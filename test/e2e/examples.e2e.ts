import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, runProgram, startShoal, stopAll } from './helpers.js';

// README's examples gallery, run line by line: each start command, then its try command
// through bash and Debian's netcat, compared with the reply written after its `#`.
afterAll(stopAll);

interface Example {
  start: string;
  tryIt: string;
  reply: string;
}

function gallery(): Example[] {
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const section = readme.slice(readme.indexOf('## Examples'), readme.indexOf('## Writing a handler'));
  const lines = section.split('\n').filter((l) => l.startsWith('    '));
  const out: Example[] = [];
  for (let i = 0; i < lines.length; i++) {
    const start = lines[i]!.trim();
    if (!start.startsWith('npx shoal start ')) continue;
    const m = /^(.*\S)\s+#\s+(.*)$/.exec(lines[i + 1]!.trim());
    if (!m) throw new Error(`no "command    # reply" line after ${start}`);
    out.push({ start, tryIt: m[1]!, reply: m[2]! });
  }
  return out;
}

describe("README's examples gallery", () => {
  const examples = gallery();

  it('lists echo, bench protocol, JSON routes, TypeScript, Redis and chat', () => {
    const handlers = examples.map((e) => /--handler (\S+)/.exec(e.start)![1]);
    expect(handlers).toEqual([
      'examples/echo/handler.js',
      'examples/bench-protocol/handler.js',
      'examples/json-routes/handler.js',
      'examples/typescript/handler.ts',
      'examples/resp/handler.js',
      'examples/chat/handler.js',
    ]);
  });

  it.each(examples.map((e) => [/--handler (\S+)/.exec(e.start)![1]!, e] as const))('%s: starts and answers as written', async (_name, e) => {
    const readmePort = /--port (\d+)/.exec(e.start)![1]!;
    // The README's commands, on a free port instead of the fixed one.
    const args = e.start.replace(/^npx shoal start /, '').replace(`--port ${readmePort}`, '--port 0').split(/\s+/);
    const shoal = await startShoal([...args, '--workers', '2']);
    const r = await runProgram('bash', ['-c', e.tryIt.replace(`127.0.0.1 ${readmePort}`, `127.0.0.1 ${shoal.port}`)]);
    expect(r.code).toBe(0);
    expect(r.stdout.toString().trim()).toBe(e.reply);
    expect((await shoal.stop('SIGTERM')).code).toBe(0);
  });
});
