/**
 * TLS termination on the main thread. A tls.Server that never listens: the shoal
 * listener accepts plain TCP (and reads a PROXY header first when that is on), then
 * hands the socket over with emit('connection') — node:tls's documented way to
 * inject a stream — and gets a TLSSocket back on 'secureConnection'. The Connection
 * sees that duplex stream like any socket, so framing, ordering and budgets do not
 * change; without `tls` none of this exists and the plaintext path is untouched.
 *
 * Certificates and keys are given as file paths (re-read by reload(), i.e.
 * server.reloadTls() and SIGHUP) or as PEM contents (Buffers, or strings beginning
 * "-----BEGIN", kept as given). reload() builds the new context first and swaps it
 * in with setSecureContext() only when that worked: new handshakes get it, open
 * connections go on with the one they negotiated, a bad file changes nothing.
 *
 * Key material never leaves this module in a printable form: toJSON() names the
 * files (or the size of a buffer), never their contents.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, createServer as createTlsServer } from 'node:tls';
import type { Server as TlsServer, TLSSocket, TlsOptions as NodeTlsOptions } from 'node:tls';
import type { Duplex } from 'node:stream';
import { InvalidOptionError, ShoalError } from '../errors.js';

/** PEM: a file path, or the PEM text itself (a Buffer, or a string beginning "-----BEGIN"). */
export type PemSource = string | Buffer;

/**
 * The `tls` option: cert and key (required), ca, requestCert and any other
 * node:tls server option (ciphers, minVersion, ALPNProtocols, ...), passed through.
 */
export interface TlsOptions extends Omit<NodeTlsOptions, 'cert' | 'key' | 'ca' | 'handshakeTimeout' | 'pfx'> {
  cert: PemSource;
  key: PemSource;
  /** CAs that client certificates must chain to (with requestCert). */
  ca?: PemSource | PemSource[];
  /** Ask clients for a certificate. Default false. With it, rejectUnauthorized defaults to true. */
  requestCert?: boolean;
}

const PEM_KEYS = ['cert', 'key', 'ca'] as const;

function isPemText(s: PemSource): boolean {
  return Buffer.isBuffer(s) || s.trimStart().startsWith('-----BEGIN');
}

function describe(s: PemSource): string {
  return Buffer.isBuffer(s) ? `<${s.length} bytes of PEM>` : isPemText(s) ? `<${s.length} characters of PEM>` : s;
}

function load(key: string, s: PemSource): Buffer | string {
  if (isPemText(s)) return s;
  try {
    return readFileSync(s);
  } catch (err) {
    throw new Error(`cannot read tls.${key} file ${s}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Validated `tls` option; holds the sources (paths) and re-reads them on demand. */
export class ResolvedTls {
  readonly #sources: TlsOptions;

  constructor(o: TlsOptions) {
    if (o === null || typeof o !== 'object') throw new InvalidOptionError('tls must be an object like { cert, key } (paths or PEM buffers)');
    for (const k of ['cert', 'key'] as const) {
      const v = o[k];
      if (!(typeof v === 'string' && v.length > 0) && !Buffer.isBuffer(v)) {
        throw new InvalidOptionError(`tls.${k} is required: a file path or a PEM Buffer`);
      }
    }
    const ca = o.ca;
    if (ca !== undefined && !(Array.isArray(ca) ? ca : [ca]).every((c) => (typeof c === 'string' && c.length > 0) || Buffer.isBuffer(c))) {
      throw new InvalidOptionError('tls.ca must be a file path, a PEM Buffer or an array of them');
    }
    if (o.requestCert !== undefined && typeof o.requestCert !== 'boolean') throw new InvalidOptionError('tls.requestCert must be a boolean');
    this.#sources = { ...o };
    // Fail at startup, not at the first handshake: read everything and build a context once.
    try {
      createSecureContext(this.contextOptions());
    } catch (err) {
      throw new InvalidOptionError(`tls: ${(err as Error).message}`);
    }
  }

  get requestCert(): boolean {
    return this.#sources.requestCert === true;
  }

  /** Everything node:tls needs, files read now. Throws an Error naming the file (not its contents). */
  contextOptions(): NodeTlsOptions {
    const o: Record<string, unknown> = { ...this.#sources };
    for (const k of PEM_KEYS) {
      const v = this.#sources[k];
      if (v === undefined) continue;
      o[k] = Array.isArray(v) ? v.map((x) => load(k, x)) : load(k, v as PemSource);
    }
    return o as NodeTlsOptions;
  }

  /** What the startup log prints: file names, never contents. */
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this.#sources)) {
      if ((PEM_KEYS as readonly string[]).includes(k)) out[k] = Array.isArray(v) ? v.map(describe) : describe(v as PemSource);
      else if (k === 'passphrase') out[k] = '<redacted>';
      else out[k] = v;
    }
    return out;
  }
}

export interface TlsHooks {
  secure(socket: TLSSocket): void;
  /** A handshake failed or timed out; the socket is destroyed already. `remote`: the peer's address. */
  failed(error: ShoalError, remote: string | undefined): void;
}

export class TlsTerminator {
  readonly #options: ResolvedTls;
  readonly #server: TlsServer;

  constructor(options: ResolvedTls, handshakeTimeout: number, hooks: TlsHooks) {
    this.#options = options;
    const base = options.contextOptions();
    this.#server = createTlsServer({
      ...base,
      // rejectUnauthorized only means something with requestCert; node:tls defaults it to true.
      handshakeTimeout: handshakeTimeout > 0 ? handshakeTimeout : 0,
      allowHalfOpen: true,
    });
    this.#server.on('secureConnection', (socket: TLSSocket) => hooks.secure(socket));
    this.#server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      // node:tls leaves the socket open after a failed handshake: a silent peer would stay.
      const remote = socket.remoteAddress;
      socket.destroy();
      hooks.failed(new ShoalError('SHOAL_TLS_HANDSHAKE_FAILED', `${err.code ?? 'TLS'}: ${err.message}`, { cause: err }), remote);
    });
  }

  /** Start the handshake on an accepted stream (bytes already read are in its buffer). */
  accept(socket: Duplex): void {
    this.#server.emit('connection', socket);
  }

  /**
   * Re-read the files and use them for new handshakes. On any failure the current
   * context stays and SHOAL_TLS_RELOAD_FAILED says why.
   */
  reload(): void {
    let next: NodeTlsOptions;
    try {
      next = this.#options.contextOptions();
      createSecureContext(next); // validate first: setSecureContext would half-apply a bad one
    } catch (err) {
      throw new ShoalError('SHOAL_TLS_RELOAD_FAILED', `TLS reload failed, keeping the current certificate: ${(err as Error).message}`, { cause: err });
    }
    this.#server.setSecureContext(next);
  }
}
