/**
 * The addresses allowed to send a PROXY protocol header: CIDR blocks matched with
 * node:net's BlockList. A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d,
 * so a mapped address is checked as the IPv4 address it carries as well.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { InvalidOptionError } from '../errors.js';

const MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i;

/** "10.0.0.0/8", "2001:db8::/32", or one address ("127.0.0.1" = /32, "::1" = /128). */
export function parseCidr(text: string): { network: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(typeof text === 'string' ? text.trim() : '');
  const network = m?.[1] ?? '';
  const family = isIPv4(network) ? 'ipv4' : isIPv6(network) ? 'ipv6' : null;
  const max = family === 'ipv4' ? 32 : 128;
  const prefix = m?.[2] === undefined ? max : Number(m[2]);
  if (family === null || prefix > max) {
    throw new InvalidOptionError(`proxyProtocol.trusted: ${JSON.stringify(text)} is not an address or CIDR block like 10.0.0.0/8 or fd00::/8`);
  }
  return { network, prefix, family };
}

export class TrustedProxies {
  readonly #list = new BlockList();
  /** The blocks as given (for logs and the options dump). */
  readonly cidrs: readonly string[];

  constructor(cidrs: readonly string[]) {
    for (const c of cidrs) {
      const { network, prefix, family } = parseCidr(c);
      this.#list.addSubnet(network, prefix, family);
    }
    this.cidrs = Object.freeze([...cidrs]);
  }

  has(address: string): boolean {
    if (isIPv4(address)) return this.#list.check(address, 'ipv4');
    if (!isIPv6(address)) return false;
    if (this.#list.check(address, 'ipv6')) return true;
    const v4 = MAPPED.exec(address);
    return v4 !== null && this.#list.check(v4[1]!, 'ipv4');
  }
}
