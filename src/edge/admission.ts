/**
 * The first bytes of a connection when PROXY protocol is on, before anything else
 * (TLS, the framer) sees the socket:
 *
 *   trusted peer    the header is required: decoded, its client becomes the peer;
 *                   malformed, of a version the mode refuses, or not whole by the
 *                   deadline: the connection is closed.
 *   other peer      a header is refused (someone forging a client address); bytes
 *                   that cannot begin one are served as they are, with the socket's
 *                   own address.
 *
 * Bytes after the header are put back into the socket (unshift) unchanged, so the
 * next stage reads the client's stream from its first byte. The deadline is checked
 * by the server's coarse tick (tick()), not a timer per socket.
 */
import type { Socket } from 'node:net';
import { ProxyHeaderError } from '../errors.js';
import type { ShoalError } from '../errors.js';
import { ProxyHeaderDecoder, sniffProxyHeader } from './proxy-protocol.js';
import type { ProxyHeader, ProxyMode } from './proxy-protocol.js';

/** Who is on the other end, as the handler and the logs should name it. */
export interface Peer {
  address: string;
  port: number;
  /** The PROXY header that named it, or null (no proxy: the socket's own address). */
  proxy: ProxyHeader | null;
}

export interface AdmissionResult {
  socket: Socket;
  /** null: serve with the socket's own address. */
  peer: Peer | null;
}

export interface AdmissionHooks {
  admitted(result: AdmissionResult): void;
  /** The socket is destroyed already; `error` says why (for counters and logs). */
  refused(socket: Socket, error: ShoalError): void;
}

export class ProxyAdmission {
  readonly socket: Socket;
  readonly #trusted: boolean;
  readonly #decoder: ProxyHeaderDecoder | null;
  readonly #deadline: number;
  readonly #hooks: AdmissionHooks;
  /** Bytes seen from an untrusted peer while they could still begin a header. */
  #sniffed: Buffer | null = null;
  #settled = false;

  constructor(socket: Socket, trusted: boolean, mode: ProxyMode, deadline: number, hooks: AdmissionHooks) {
    this.socket = socket;
    this.#trusted = trusted;
    this.#decoder = trusted ? new ProxyHeaderDecoder(mode) : null;
    this.#deadline = deadline;
    this.#hooks = hooks;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('close', this.#onClose);
  }

  readonly #onData = (chunk: Buffer): void => {
    if (this.#decoder !== null) {
      let result;
      try {
        result = this.#decoder.push(chunk);
      } catch (err) {
        this.#refuse(err as ProxyHeaderError);
        return;
      }
      if (result === null) return;
      const { header, rest } = result;
      // LOCAL, UNKNOWN and UNSPEC name no client: the socket's own address stands.
      const s = this.socket;
      this.#admit({ address: header.source?.address ?? s.remoteAddress ?? '', port: header.source?.port ?? s.remotePort ?? 0, proxy: header }, rest);
      return;
    }
    const seen = this.#sniffed === null ? chunk : Buffer.concat([this.#sniffed, chunk]);
    const verdict = sniffProxyHeader(seen);
    if (verdict === 'yes') {
      this.#refuse(new ProxyHeaderError('SHOAL_PROXY_HEADER_REFUSED', `PROXY header from ${this.socket.remoteAddress}, which is not a trusted proxy`));
    } else if (verdict === 'no') {
      this.#admit(null, seen);
    } else {
      this.#sniffed = seen;
    }
  };

  /** The coarse tick (`now`: clockMs(), src/clock.ts): past the deadline a trusted peer is cut; an untrusted one is served as it is. */
  tick(now: number): void {
    if (this.#settled || now < this.#deadline) return;
    if (this.#trusted) {
      this.#refuse(new ProxyHeaderError('SHOAL_PROXY_HEADER_TIMEOUT', `no whole PROXY header from ${this.socket.remoteAddress} in time (${this.#decoder!.buffered} bytes so far)`));
    } else {
      this.#admit(null, this.#sniffed);
    }
  }

  /** Closing server: drop what has not been admitted yet. */
  destroy(): void {
    this.#settled = true;
    this.#detach();
    this.socket.destroy();
  }

  readonly #onEnd = (): void => {
    // A peer that closes its side before its first bytes could be judged has nothing to be served.
    this.#refuse(new ProxyHeaderError(this.#trusted ? 'SHOAL_PROXY_HEADER_INVALID' : 'SHOAL_PROXY_HEADER_REFUSED', 'peer closed before a PROXY header was complete'));
  };

  readonly #onError = (): void => {
    // 'close' follows and settles.
  };

  readonly #onClose = (): void => {
    if (this.#settled) return;
    this.#settled = true;
    this.#detach();
    this.#hooks.refused(this.socket, new ProxyHeaderError(this.#trusted ? 'SHOAL_PROXY_HEADER_INVALID' : 'SHOAL_PROXY_HEADER_REFUSED', 'connection closed before a PROXY header was complete'));
  };

  #admit(peer: Peer | null, rest: Buffer | null): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#detach();
    const socket = this.socket;
    socket.pause();
    if (rest !== null && rest.length > 0) socket.unshift(rest);
    this.#hooks.admitted({ socket, peer });
  }

  #refuse(error: ProxyHeaderError): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#detach();
    this.socket.destroy();
    this.#hooks.refused(this.socket, error);
  }

  #detach(): void {
    const s = this.socket;
    s.removeListener('data', this.#onData);
    s.removeListener('end', this.#onEnd);
    s.removeListener('close', this.#onClose);
    // The no-op 'error' listener stays: a reset while the socket changes hands must not crash the process.
  }
}
