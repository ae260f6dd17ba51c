/**
 * Pushes on the main thread (issue 12): the connections by id, the groups, and
 * applying a message's pushes (dispatch/push-wire.ts) when its connection releases it.
 *
 * Groups live here, on the main thread, whatever worker ran the handler that joined
 * one: every worker's broadcasts reach the same members. A connection leaves all its
 * groups when it closes (remove()). Each push goes through the member's own send
 * queue and budgets (Connection.push()); a push to a connection that has closed, or
 * that a push cut (sendQueueLimit), is counted, not an error.
 */
import { P_BROADCAST, P_JOIN, P_LEAVE, P_SEND_TO } from './dispatch/push-wire.js';
import type { Push } from './dispatch/push-wire.js';

/** What a push needs of a connection (Connection implements it). */
export interface PushMember {
  readonly id: number;
  /** Write framed bytes through the send queue; false when the connection no longer writes (see Connection.push()). */
  push(bytes: Uint8Array): boolean;
  /** Its pushes made a burst at a member: read no more this turn. */
  backOff(): void;
}

/** Push counters (in server.stats().counters and the metrics). */
export interface PushCounters {
  /** Push frames written to a connection (a broadcast to n members counts n). */
  pushesSent: number;
  /** Pushes to a connection that had closed (or was closing, or unknown), or that the push cut at sendQueueLimit. */
  pushesUndelivered: number;
  /** Pushes of messages whose own connection closed before their replies were released: never applied. */
  pushesDropped: number;
}

export class PushHub<M extends PushMember = PushMember> {
  readonly counters: PushCounters = { pushesSent: 0, pushesUndelivered: 0, pushesDropped: 0 };
  /** Push bytes one member may get in one event-loop turn before the sender backs off (sendHighWater). */
  readonly #burstBytes: number;
  /** Push bytes written to each member in this turn (cleared at its end): none kept for a quiet member. */
  readonly #turnBytes = new Map<M, number>();
  #turnEnding = false;
  /** Every open connection: the server's registry, shared (one entry per connection, not two). */
  readonly #members: ReadonlySet<M>;
  /**
   * The members by id, made on the first push by id (sendTo, server.send) and kept from
   * then on: a server that never pushes by id keeps no second entry per connection.
   */
  #byId: Map<number, M> | null = null;
  readonly #groups = new Map<string, Set<M>>();
  /** The groups of each member (to leave them all on close). */
  readonly #memberOf = new Map<M, Set<string>>();
  /** A push of the message being applied made a burst. */
  #burst = false;

  /** `members`: the open connections, kept by the caller (add() and remove() follow it). */
  constructor(burstBytes: number, members: ReadonlySet<M>) {
    this.#burstBytes = burstBytes;
    this.#members = members;
  }

  /** A connection opened (it is in `members` already). */
  add(member: M): void {
    this.#byId?.set(member.id, member);
  }

  /** The connection closed (it left `members`): it leaves every group. */
  remove(member: M): void {
    this.#byId?.delete(member.id);
    const groups = this.#memberOf.get(member);
    if (groups === undefined) return;
    this.#memberOf.delete(member);
    for (const g of groups) this.#leave(member, g);
  }

  join(member: M, group: string): void {
    if (!this.#members.has(member)) return; // closed meanwhile: it would never leave
    let members = this.#groups.get(group);
    if (members === undefined) this.#groups.set(group, (members = new Set()));
    members.add(member);
    let groups = this.#memberOf.get(member);
    if (groups === undefined) this.#memberOf.set(member, (groups = new Set()));
    groups.add(group);
  }

  leave(member: M, group: string): void {
    this.#memberOf.get(member)?.delete(group);
    this.#leave(member, group);
  }

  #leave(member: M, group: string): void {
    const members = this.#groups.get(group);
    if (members === undefined) return;
    members.delete(member);
    if (members.size === 0) this.#groups.delete(group);
  }

  /** Members of `group` now (0 for a group nobody is in). */
  size(group: string): number {
    return this.#groups.get(group)?.size ?? 0;
  }

  /** Groups with at least one member. */
  get groups(): number {
    return this.#groups.size;
  }

  /**
   * Apply the pushes of one message of `sender`, in the order they were made. A burst at
   * a member (more than sendHighWater pushed to it in one event-loop turn, while its peer
   * cannot read yet) makes the sender back off for a turn: bursts stay bounded, and only
   * a member that stops reading reaches its sendQueueLimit.
   */
  apply(sender: M, pushes: readonly Push[]): void {
    this.#burst = false;
    for (const p of pushes) {
      switch (p.op) {
        case P_SEND_TO:
          this.send(p.connectionId, p.bytes!);
          break;
        case P_BROADCAST:
          this.broadcast(p.bytes!, p.group);
          break;
        case P_JOIN:
          this.join(sender, p.group!);
          break;
        case P_LEAVE:
          this.leave(sender, p.group!);
          break;
      }
    }
    if (this.#burst) sender.backOff();
  }

  /** A message's pushes that will never be applied (its connection closed first): counted. */
  dropped(pushes: readonly Push[]): void {
    for (const p of pushes) if (p.bytes !== null) this.counters.pushesDropped++;
  }

  /** Framed bytes to one connection; false (and counted) when it is gone. */
  send(connectionId: number, bytes: Uint8Array): boolean {
    const member = this.#memberById(connectionId);
    if (member === undefined || !member.push(bytes)) {
      this.counters.pushesUndelivered++;
      return false;
    }
    this.#account(member, bytes.length);
    this.counters.pushesSent++;
    return true;
  }

  /** The same framed bytes to every member of `group` (null: every connection); returns how many were written. */
  broadcast(bytes: Uint8Array, group: string | null): number {
    const members = group === null ? this.#members.values() : this.#groups.get(group)?.values();
    if (members === undefined) return 0;
    let sent = 0;
    // A push that cuts a member does not change the set now: its close comes in a later turn.
    for (const m of members) {
      if (m.push(bytes)) {
        sent++;
        this.#account(m, bytes.length);
      } else this.counters.pushesUndelivered++;
    }
    this.counters.pushesSent += sent;
    return sent;
  }

  #memberById(id: number): M | undefined {
    if (this.#byId === null) {
      this.#byId = new Map();
      for (const m of this.#members) this.#byId.set(m.id, m);
    }
    return this.#byId.get(id);
  }

  /** Count `n` bytes pushed to `m` in this turn; past the burst size the sender will back off. */
  #account(m: M, n: number): void {
    if (!this.#turnEnding) {
      this.#turnEnding = true;
      setImmediate(this.#endTurn);
    }
    const total = (this.#turnBytes.get(m) ?? 0) + n;
    this.#turnBytes.set(m, total);
    if (total > this.#burstBytes) this.#burst = true;
  }

  readonly #endTurn = (): void => {
    this.#turnEnding = false;
    this.#turnBytes.clear();
  };
}
