import { afterAll, describe, expect, it } from 'vitest';
import { startProgram, startShoal, stopAll } from './helpers.js';

// examples/chat started with its README's command, talked to by real netcat-openbsd clients.
afterAll(stopAll);

describe('examples/chat with nc clients', () => {
  it('two nc users join a room, talk, rename and leave; a third in another room hears none of it', async () => {
    const shoal = await startShoal(['--handler', 'examples/chat/handler.js', '--framing', 'line', '--codec', 'utf8', '--affinity', 'connection', '--workers', '2']);
    // -N: on stdin's end, shut the socket down (the server answers what it read, then closes).
    const nc = () => startProgram('nc', ['-N', '127.0.0.1', String(shoal.port)]);
    const alice = nc();
    const bob = nc();
    const carol = nc();
    alice.child.stdin!.write('/nick alice\n/join lobby\n');
    await alice.waitFor(/\* alice joined #lobby\n/);
    bob.child.stdin!.write('/nick bob\r\n/join lobby\r\n'); // CRLF lines, as a telnet-style client sends
    await bob.waitFor(/\* bob joined #lobby\n/);
    await alice.waitFor(/\* bob joined #lobby\n/);
    carol.child.stdin!.write('/nick carol\n/join kitchen\n');
    await carol.waitFor(/\* carol joined #kitchen\n/);
    bob.child.stdin!.write('hi alice\n/nick robert\n');
    await alice.waitFor(/\* bob is now robert\n/);
    alice.child.stdin!.write('hello robert\n/leave\n');
    await bob.waitFor(/\* alice left #lobby\n/);
    await alice.waitFor(/\* you left\n/);
    carol.child.stdin!.write('/leave\n');
    await carol.waitFor(/\* you left\n/);
    for (const p of [alice, bob, carol]) p.child.stdin!.end();
    for (const p of [alice, bob, carol]) expect((await p.exited).code).toBe(0);
    expect(alice.stdout()).toBe(
      ['* you are now alice', '* alice joined #lobby', '* bob joined #lobby', '<bob> hi alice', '* bob is now robert', '<alice> hello robert', '* alice left #lobby', '* you left', ''].join('\n'),
    );
    expect(bob.stdout()).toBe(['* you are now bob', '* bob joined #lobby', '<bob> hi alice', '* bob is now robert', '<alice> hello robert', '* alice left #lobby', ''].join('\n'));
    expect(carol.stdout()).toBe(['* you are now carol', '* carol joined #kitchen', '* carol left #kitchen', '* you left', ''].join('\n'));
    expect((await shoal.stop('SIGTERM')).code).toBe(0);
  });
});
