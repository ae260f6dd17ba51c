/**
 * The fan-out bench's shoal handler (bench/fanout.ts), raw codec, length framing:
 *   'J' ...  join the group "g"; replies "j"
 *   'B' ...  broadcast the whole body to "g" (no reply)
 */
import type { HandlerContext } from '../src/index.js';

export default function fanout(frame: Buffer, ctx: HandlerContext): Buffer | null {
  if (frame[0] === 0x4a /* J */) {
    ctx.join('g');
    return Buffer.from('j');
  }
  ctx.broadcast(frame, { group: 'g' });
  return null;
}
