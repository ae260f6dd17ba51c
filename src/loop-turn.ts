/**
 * Tells a reset from a FIN when libuv reports both as an end of stream.
 *
 * A reset that lands behind bytes not read yet reaches a Node socket as 'end', not as
 * ECONNRESET: libuv takes POLLHUP after a partial read for the end of the stream, and the
 * kernel's pending error is never read. That end comes in the same poll callback as those
 * bytes. A real FIN is only seen by a later read(), after a check phase. So: note
 * loopTurn() at every read; an end while it is unchanged is a reset. (Only while our side
 * is open: after our own end() a FIN sets POLLHUP as well.)
 */

let turn = 0;
let turnEnding = false;

/** The current event-loop turn, counted lazily: it moves on in the check phase after a call. */
export function loopTurn(): number {
  if (!turnEnding) {
    turnEnding = true;
    setImmediate(() => {
      turn++;
      turnEnding = false;
    });
  }
  return turn;
}

/** An end of stream in the turn of the last read (`readTurn`, from loopTurn(); -1: none) is a reset. */
export function endIsReset(readTurn: number): boolean {
  return readTurn === turn;
}
