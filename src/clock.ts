/**
 * The coarse clock of connections and admissions: ms since shoal was loaded.
 *
 * Why not Date.now()? A timestamp of ~1.7e12 does not fit a small integer, so V8 boxes
 * it in a heap number, 16 bytes per timestamp field per connection (three of them: 48 B
 * of a ~1.8 KiB connection). Milliseconds since load, made an int32 (`| 0`: a difference
 * of two doubles is a double, boxed too), stay small integers for 24.8 days of uptime;
 * after that they are plain doubles again: boxed, still correct.
 */
export const CLOCK_EPOCH = Date.now();

export function clockMs(): number {
  const t = Date.now() - CLOCK_EPOCH;
  return t < 0x7fffffff ? t | 0 : t;
}
