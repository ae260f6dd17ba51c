import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { from, member } from '../push/helpers.js';
import type { Member } from '../push/helpers.js';

// examples/chat with the shoal client: line framing, 2 workers, affinity per connection
// (the example's README start command), so the nick kept in a worker is always right.

const CHAT = `${ROOT}examples/chat/handler.js`;
const LINE = { type: 'line', maxLength: 4096 } as const;

let running: Running | null = null;
let members: Member[] = [];

afterEach(async () => {
  for (const m of members) m.client.close();
  members = [];
  await running?.close();
  running = null;
});

async function chat(): Promise<Running> {
  running = await start({ handler: CHAT, framing: { type: 'line' }, codec: 'utf8', workers: 2, affinity: 'connection' });
  return running;
}

async function user(nick: string, room: string): Promise<Member> {
  const m = await member(running!.port, LINE);
  members.push(m);
  m.send(`/nick ${nick}`);
  m.send(`/join ${room}`);
  await m.until(2, `${nick} joining`);
  expect(m.frames).toEqual([`* you are now ${nick}`, `* ${nick} joined #${room}`]);
  return m;
}

describe('examples/chat', () => {
  it('announces joins, nick changes and leaves to the room, and sends lines to its members only', async () => {
    await chat();
    const alice = await user('alice', 'lobby');
    const bob = await user('bob', 'lobby');
    const carol = await user('carol', 'kitchen');
    await alice.until(3, 'bob\'s join');
    expect(alice.frames[2]).toBe('* bob joined #lobby');
    bob.send('hi alice');
    bob.send('/nick robert');
    bob.send('still me');
    await alice.until(6, 'bob\'s lines and his new name');
    expect(alice.frames.slice(3)).toEqual(['<bob> hi alice', '* bob is now robert', '<robert> still me']);
    alice.send('/leave');
    await bob.until(6, 'alice leaving');
    expect(bob.frames.slice(2)).toEqual(['<bob> hi alice', '* bob is now robert', '<robert> still me', '* alice left #lobby']);
    await alice.until(8, 'alice\'s own leave');
    expect(alice.frames.slice(6)).toEqual(['* alice left #lobby', '* you left']);
    alice.send('anyone?');
    expect(await alice.next('the error line')).toBe('! join a room first: /join ROOM');
    // carol's room heard none of it: her next frame is the answer to her own command.
    carol.send('/frobnicate');
    expect(await carol.next('the unknown command line')).toMatch(/^! unknown command \/frobnicate/);
    expect(carol.frames).toHaveLength(3);
  });

  it('keeps each connection\'s nick right under pipelined load on 2 workers, each sender in order', async () => {
    await chat();
    const users = [];
    for (let u = 0; u < 4; u++) users.push(await user(`u${u}`, 'hall'));
    // Everyone has joined: the first user saw the others' three joins.
    await users[0]!.until(2 + 3, 'the other joins');
    const N = 200;
    const base = users.map((m) => m.frames.length);
    // All at once, pipelined: a nick change half way, so a line on the wrong worker (or out of order) shows.
    for (let i = 0; i < N; i++) {
      for (const [u, m] of users.entries()) {
        if (i === N / 2) m.send(`/nick v${u}`);
        m.send(`m${i}`);
      }
    }
    for (const [k, m] of users.entries()) {
      await m.until(base[k]! + users.length * (N + 1), `user ${k}'s lines`);
      const got = m.frames.slice(base[k]);
      for (let u = 0; u < users.length; u++) {
        const mine = got.filter((f) => f.startsWith(`<u${u}> `) || f.startsWith(`<v${u}> `) || f.startsWith(`* u${u} is now`));
        const want = [];
        for (let i = 0; i < N; i++) {
          if (i === N / 2) want.push(`* u${u} is now v${u}`);
          want.push(`<${i < N / 2 ? 'u' : 'v'}${u}> m${i}`);
        }
        expect(mine).toEqual(want);
      }
      expect(from(got, '!')).toEqual([]);
    }
  });
});
