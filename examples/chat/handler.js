// A chat server: one text line per message (line framing, utf8 codec).
//
//   /nick NAME    change your name (announced to your room)
//   /join ROOM    enter ROOM (leaving the one you were in); announced to it
//   /leave        leave your room; announced to it
//   anything else goes to everyone in your room, you included, as "<nick> text"
//
// Rooms are shoal groups: they live on the main thread, so a broadcast from any worker
// reaches every member. Your nick and room are per-connection state kept HERE, in the
// worker's memory: that needs every message of a connection on the same worker, in order.
// Start it with --affinity connection (see README.md next to this file).
//
//   shoal start --handler examples/chat/handler.js --framing line --codec utf8 --affinity connection

const NAME = /^[\p{L}\p{N}_.-]{1,32}$/u;

/** This worker's connections: connectionId -> { nick, room }. */
const sessions = new Map();
/**
 * A handler does not hear of closes, so the session of a connection that left stays
 * until this many newer ones push it out (Map keeps insertion order: the oldest go first).
 */
const MAX_SESSIONS = 100_000;

function session(ctx) {
  let s = sessions.get(ctx.connectionId);
  if (s === undefined) {
    s = { nick: `guest${ctx.connectionId}`, room: null };
    sessions.set(ctx.connectionId, s);
    if (sessions.size > MAX_SESSIONS) sessions.delete(sessions.keys().next().value);
  }
  return s;
}

function leaveRoom(s, ctx) {
  ctx.broadcast(`* ${s.nick} left #${s.room}`, { group: s.room });
  ctx.leave(s.room);
  s.room = null;
}

export default function chat(line, ctx) {
  const text = line.endsWith('\r') ? line.slice(0, -1) : line;
  if (text === '') return null;
  const s = session(ctx);
  if (!text.startsWith('/')) {
    if (s.room === null) return '! join a room first: /join ROOM';
    ctx.broadcast(`<${s.nick}> ${text}`, { group: s.room });
    return null;
  }
  const [command, arg = ''] = text.split(/\s+/, 2);
  switch (command) {
    case '/nick': {
      if (!NAME.test(arg)) return '! a name is 1 to 32 letters, digits, _ . or -';
      const old = s.nick;
      s.nick = arg;
      if (s.room === null) return `* you are now ${arg}`;
      ctx.broadcast(`* ${old} is now ${arg}`, { group: s.room });
      return null;
    }
    case '/join': {
      if (!NAME.test(arg)) return '! a room is 1 to 32 letters, digits, _ . or -';
      if (s.room === arg) return `! already in #${arg}`;
      if (s.room !== null) leaveRoom(s, ctx);
      s.room = arg;
      // The join is applied before the broadcast (in call order): the joiner sees it too.
      ctx.join(arg);
      ctx.broadcast(`* ${s.nick} joined #${arg}`, { group: arg });
      return null;
    }
    case '/leave':
      if (s.room === null) return '! not in a room';
      leaveRoom(s, ctx);
      return '* you left';
    default:
      return `! unknown command ${command} (try /nick NAME, /join ROOM, /leave)`;
  }
}
