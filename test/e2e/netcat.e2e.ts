import { afterAll, describe, expect, it } from 'vitest';
import { runProgram, startShoal, stopAll } from './helpers.js';

// README's "Talk to it": a raw bench-protocol request from Debian's netcat-openbsd.
afterAll(stopAll);

describe('shoal start answers netcat', () => {
  it('echoes a bench-protocol K=0 request and hashes a K=1 request', async () => {
    const shoal = await startShoal(['--handler', 'examples/bench-protocol/handler.js', '--workers', '2']);
    const echo = Buffer.concat([Buffer.from([0, 0, 0, 19, 0, 0, 0, 0]), Buffer.from('i am spiderman.')]);
    const hash = Buffer.concat([Buffer.from([0, 0, 0, 19, 0, 0, 0, 1]), Buffer.from('i am spiderman.')]);
    const r = await runProgram('nc', ['-q1', '127.0.0.1', String(shoal.port)], { input: Buffer.concat([echo, hash]) });
    expect(r.code).toBe(0);
    const want = Buffer.concat([
      Buffer.from([0, 0, 0, 15]),
      Buffer.from('i am spiderman.'),
      Buffer.from([0, 0, 0, 32]),
      Buffer.from('d69fc959dd3e23abac25fc9a7fee91aef9fad24bfb162227654bca21764c5b7d', 'hex'),
    ]);
    expect(r.stdout.toString('hex')).toBe(want.toString('hex'));
    const exit = await shoal.stop('SIGTERM');
    expect(exit.code).toBe(0);
  });
});
