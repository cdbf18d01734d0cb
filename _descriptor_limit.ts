// Listeners that ran out of descriptors (EMFILE, ENFILE from accept) stop
// accepting and wait here, on either backend: a level-triggered listener
// would otherwise be reported readable on every pass, and each retry made
// and threw another error. They are resumed when a socket of either backend
// closes, and once a second meanwhile for descriptors freed elsewhere (a
// file, a connection this library does not own).

const RETRY_MS = 1000;

const waiting = new Set<() => void>();
let retry: ReturnType<typeof setInterval> | undefined;

/** Whether `error` is accept()'s "out of descriptors" (EMFILE or ENFILE). */
export function isOutOfDescriptors(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  return code === "EMFILE" || code === "ENFILE";
}

/** Calls `resume` once a descriptor may be free; {@linkcode stopWaiting} cancels. */
export function waitForDescriptor(resume: () => void): void {
  waiting.add(resume);
  if (retry === undefined) {
    const timer = setInterval(descriptorFreed, RETRY_MS);
    Deno.unrefTimer(timer);
    retry = timer;
  }
}

/** Forgets `resume` (its listener closed or resumed by itself). */
export function stopWaiting(resume: () => void): void {
  waiting.delete(resume);
  if (waiting.size === 0) stopRetrying();
}

/** A descriptor was closed: every waiting listener tries again. */
export function descriptorFreed(): void {
  if (waiting.size === 0) return;
  const resumes = [...waiting];
  waiting.clear();
  stopRetrying();
  for (const resume of resumes) resume();
}

/**
 * {@linkcode descriptorFreed} a turn from now, for the promise backend:
 * Deno lets a closed connection's descriptor go once the read waiting on it
 * is cancelled, in the next turn. Nothing is scheduled while no listener
 * waits.
 */
export function descriptorFreedNextTurn(): void {
  if (waiting.size > 0) setTimeout(descriptorFreed, 0);
}

function stopRetrying(): void {
  if (retry === undefined) return;
  clearInterval(retry);
  retry = undefined;
}
