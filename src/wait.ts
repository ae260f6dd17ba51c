/**
 * Wait for `promise`, but at most `ms`: resolves when either comes first (rejects if
 * the promise rejects first). The timer never outlives the wait. Every bounded wait
 * of a shutdown goes through here.
 */
export async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
