import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { ServerOptions, ShoalServer } from '../../dist/src/index.js';
import { FIXTURES, start } from '../helpers/server.js';
import type { Running } from '../helpers/server.js';
import { adminPort, sample, scrape } from '../admin/helpers.js';
import { waitFor } from '../helpers/wire.js';
import { from, member } from './helpers.js';
import type { Member } from './helpers.js';

// Pushes (issue 12): ctx.broadcast / sendTo / join / leave from handlers in workers and
// inline, server.send / broadcast, over real sockets. Every wait is on frames arriving.

const ROOM = `${FIXTURES}push-room.js`;

let running: Running | null = null;
let members: Member[] = [];

afterEach(async () => {
  for (const m of members) m.client.close();
  members = [];
  await running?.close();
  running = null;
});

async function serve(workers: number, extra: Partial<ServerOptions> = {}): Promise<ShoalServer> {
  running = await start({ handler: ROOM, codec: 'utf8', workers, offload: workers > 0 ? 'always' : 'auto', ...extra });
  return running.server;
}

async function join(group: string, n: number): Promise<Member[]> {
  const out: Member[] = [];
  for (let k = 0; k < n; k++) {
    const m = await member(running!.port);
    members.push(m);
    const joined = m.next(`member ${k} joining`);
    m.send(`join ${group}`);
    expect(await joined).toBe(`joined ${group}`);
    out.push(m);
  }
  return out;
}

async function idOf(m: Member): Promise<number> {
  const reply = m.next('its id');
  m.send('id');
  return Number(await reply);
}

/** Each sender's frames in `frames` are 0, 1, 2, ... n-1: none lost, none reordered. */
function expectEverySenderInOrder(frames: string[], senders: number, n: number): void {
  for (let s = 0; s < senders; s++) {
    expect(from(frames, `s${s}:`)).toEqual(Array.from({ length: n }, (_, i) => `s${s}:${i}`));
  }
}

describe.each([
  { workers: 2, where: 'in 2 workers' },
  { workers: 0, where: 'inline (workers: 0)' },
])('pushes from handlers $where', ({ workers }) => {
  it('a broadcast reaches every member of the group, each sender in its send order (several pipelined senders)', async () => {
    await serve(workers);
    const room = await join('room', 4);
    const outsider = await member(running!.port);
    members.push(outsider);
    const N = 300;
    // Three of the members send, all pipelined at once: the pool runs them on both workers in parallel.
    for (let i = 0; i < N; i++) for (let s = 0; s < 3; s++) room[s]!.send(`say room s${s}:${i}`);
    for (const [k, m] of room.entries()) {
      await m.until(1 + 3 * N, `member ${k}'s broadcasts`);
      expect(m.frames[0]).toBe('joined room');
      expect(m.frames.length).toBe(1 + 3 * N);
      expectEverySenderInOrder(m.frames.slice(1), 3, N);
    }
    // Every push was written when the last member got it: the outsider's own reply comes first.
    expect(String(await idOf(outsider))).toBe(outsider.frames[0]);
    expect(outsider.frames).toHaveLength(1);
    const c = running!.server.stats().counters;
    expect(c.pushesSent).toBe(4 * 3 * N);
    expect(c.pushesUndelivered).toBe(0);
  });

  it('join and leave take effect in the sender\'s message order', async () => {
    await serve(workers);
    const [listener] = await join('room', 1);
    const m = await member(running!.port);
    members.push(m);
    // Pipelined: with workers these run in parallel; the connection releases them in order.
    for (const line of ['say room a', 'join room', 'say room b', 'leave room', 'say room c']) m.send(line);
    await listener!.until(4, 'a, b and c');
    expect(listener!.frames).toEqual(['joined room', 'a', 'b', 'c']);
    await m.until(3, 'the sender\'s replies and its own broadcast');
    expect(String(await idOf(m))).toBe(m.frames[3]);
    expect(m.frames.slice(0, 3)).toEqual(['joined room', 'b', 'left room']);
  });

  it('a broadcast without a group goes to every connection, the sender included; sendTo reaches one', async () => {
    await serve(workers);
    const a = await member(running!.port);
    const b = await member(running!.port);
    members.push(a, b);
    const bId = await idOf(b);
    a.send('all hello everyone');
    a.send(`to ${bId} just for b`);
    a.send('later from an async handler');
    await b.until(4, 'the broadcasts and the direct push');
    expect(b.frames.slice(1)).toEqual(['hello everyone', 'just for b', 'from an async handler']);
    await a.until(2, 'a\'s broadcasts');
    expect(a.frames).toEqual(['hello everyone', 'from an async handler']);
  });

  it('a push to a closed connection is counted, not an error; a failed message pushes nothing', async () => {
    const server = await serve(workers, { onHandlerError: 'drop' });
    const [listener] = await join('room', 1);
    const gone = await member(running!.port);
    const goneId = await idOf(gone);
    const closed = once(server, 'connectionClose');
    gone.client.close();
    await closed;
    const m = await member(running!.port);
    members.push(m);
    m.send(`to ${goneId} hello?`);
    m.send('fail room never sent');
    m.send('say room after the failure');
    await listener!.until(2, 'the broadcast after the failed one');
    expect(listener!.frames).toEqual(['joined room', 'after the failure']);
    const c = server.stats().counters;
    expect(c.pushesUndelivered).toBe(1);
    expect(c.handlerErrors).toBe(1);
    expect(c.pushesSent).toBe(1);
  });

  it('the pushes of a message whose connection was reset before its reply are dropped and counted', async () => {
    const server = await serve(workers);
    const [listener] = await join('room', 1);
    const gone = await member(running!.port);
    const closed = once(server, 'connectionClose');
    gone.send('slow 300 never sent'); // async: it completes after the reset
    await waitFor(() => server.stats().connections.inFlight === 1, 'the slow message read');
    gone.client.socket.resetAndDestroy();
    await closed;
    await waitFor(() => server.stats().counters.pushesDropped === 1, 'the dropped push counted');
    listener!.send('say room still here');
    await listener!.until(2, 'the listener\'s own broadcast');
    expect(listener!.frames).toEqual(['joined room', 'still here']);
  });

  it('a member that never reads is cut at sendQueueLimit while the others keep receiving', async () => {
    // The limit well above one turn's burst (16 in flight x 16 KiB): only a peer that stops reading reaches it.
    const server = await serve(workers, { sendHighWater: 256 * 1024, sendLowWater: 64 * 1024, sendQueueLimit: 4 * 1024 * 1024, maxInFlightPerConnection: 16 });
    const [reader, stuck] = await join('room', 2);
    stuck!.client.socket.pause(); // never reads again: the kernel buffers fill, then its send queue
    const cut = new Promise<{ code: string }>((resolve) => server.on('connectionError', (_c, err) => resolve(err)));
    const sender = await member(running!.port);
    members.push(sender);
    // 2000 x 16 KiB = 31 MiB: more than loopback's socket buffers plus the limit.
    const N = 2000;
    for (let i = 0; i < N; i++) sender.send('big room 16384');
    expect((await cut).code).toBe('SHOAL_SEND_QUEUE_FULL');
    await reader!.until(1 + N, 'every big broadcast at the member that reads', 60_000);
    expect(reader!.frames.slice(1).every((f) => f.length === 16384)).toBe(true);
    const s = server.stats();
    expect(s.budgetHits.sendQueueLimit).toBe(1);
    // The reader got all N; the cut member some, then the push that cut it (and any before its close) went nowhere.
    expect(s.counters.pushesSent).toBeGreaterThan(N);
    expect(s.counters.pushesSent).toBeLessThan(2 * N);
    expect(s.counters.pushesUndelivered).toBeGreaterThan(0);
    expect(server.groupSize('room')).toBe(1);
  }, 90_000);
});

describe('pushes from the main thread', () => {
  it('server.send and server.broadcast reach connections through their send queues', async () => {
    const server = await serve(2);
    const [a, b] = await join('room', 2);
    const c = await member(running!.port);
    members.push(c);
    const aId = await idOf(a!);
    expect(server.groupSize('room')).toBe(2);
    expect(server.send(aId, 'to a')).toBe(true);
    expect(server.broadcast('to the room', { group: 'room' })).toBe(2);
    expect(server.broadcast('to all')).toBe(3);
    expect(server.broadcast('nobody', { group: 'empty' })).toBe(0);
    expect(server.send(999_999, 'nobody')).toBe(false);
    await a!.until(5, 'a\'s pushes');
    expect(a!.frames.slice(2)).toEqual(['to a', 'to the room', 'to all']);
    await b!.until(3, 'b\'s pushes');
    expect(b!.frames.slice(1)).toEqual(['to the room', 'to all']);
    await c.until(1, 'c\'s push');
    expect(c.frames).toEqual(['to all']);
    expect(server.stats().counters.pushesUndelivered).toBe(1);
    expect(() => server.send(0, 'x')).toThrow(expect.objectContaining({ code: 'SHOAL_PUSH_INVALID' }));
    expect(() => server.broadcast(null)).toThrow(expect.objectContaining({ code: 'SHOAL_PUSH_INVALID' }));
    expect(() => server.broadcast('x', { group: '' })).toThrow(expect.objectContaining({ code: 'SHOAL_PUSH_INVALID' }));
  });

  it('a push by id finds connections opened after the first one and not those closed since (the by-id map is made on first use)', async () => {
    const server = await serve(2);
    const a = await member(running!.port);
    members.push(a);
    const aId = await idOf(a);
    expect(server.send(aId, 'first')).toBe(true); // the first push by id: the map is made from the open connections
    await a.until(2, 'a\'s first push');
    const b = await member(running!.port);
    members.push(b);
    const bId = await idOf(b);
    expect(server.send(bId, 'to the newcomer')).toBe(true);
    await b.until(2, 'b\'s push');
    expect(b.frames.slice(1)).toEqual(['to the newcomer']);
    const closed = once(server, 'connectionClose');
    a.client.close();
    await closed;
    expect(server.send(aId, 'to nobody')).toBe(false);
    expect(server.stats().counters.pushesUndelivered).toBe(1);
  });

  it('under routing a push carries the route id of the message that made it, like its reply', async () => {
    running = await start({ handler: `${FIXTURES}push-routes.js`, routing: { idBytes: 4 }, workers: 2, offload: 'always' });
    const m = await member(running.port);
    members.push(m);
    m.client.send(Buffer.from([0, 0, 0, 7, 0x78]));
    await m.until(2, 'the push and the reply');
    expect(m.frames).toEqual(['\0\0\0\x07pushed', '\0\0\0\x07replied']);
  });

  it('the admin endpoint counts pushes by outcome', async () => {
    const server = await serve(2, { admin: { port: 0 } });
    const [a] = await join('room', 1);
    expect(server.broadcast('hello', { group: 'room' })).toBe(1);
    expect(server.send(424_242, 'nobody')).toBe(false);
    await a!.until(2, 'the broadcast');
    const m = await scrape(adminPort(server));
    expect(sample(m, 'shoal_pushes_total', { outcome: 'sent' })).toBe(1);
    expect(sample(m, 'shoal_pushes_total', { outcome: 'undelivered' })).toBe(1);
    expect(sample(m, 'shoal_pushes_total', { outcome: 'dropped' })).toBe(0);
  });

  it('a connection leaves its groups when it closes', async () => {
    const server = await serve(2);
    const [a] = await join('room', 2);
    expect(server.groupSize('room')).toBe(2);
    const closed = once(server, 'connectionClose');
    a!.client.close();
    await closed;
    expect(server.groupSize('room')).toBe(1);
  });

  it('groups and pushes keep working across a hot reload', async () => {
    const server = await serve(2);
    const [a, b] = await join('room', 2);
    a!.send('say room before');
    await b!.until(2, 'the broadcast before the reload');
    await server.reload();
    a!.send('say room after');
    await b!.until(3, 'the broadcast after the reload');
    expect(b!.frames).toEqual(['joined room', 'before', 'after']);
  });
});
