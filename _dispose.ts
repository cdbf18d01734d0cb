// Disposing what holds resources (producers with `[Symbol.dispose]`, such as
// a FileProducer), shared by asynchat.ts's output queue and the wrapping
// producers.

/** Disposes `value` if it can be disposed (has `[Symbol.dispose]`). */
export function disposeIfDisposable(value: unknown): void {
  const dispose = (value as Partial<Disposable> | null | undefined)?.[
    Symbol.dispose
  ];
  if (typeof dispose === "function") dispose.call(value);
}

/**
 * Disposes each of `values` that can be disposed; if some throw, the first
 * error is thrown once all have been tried.
 */
export function disposeAll(values: readonly unknown[]): void {
  let failure: { error: unknown } | null = null;
  for (const value of values) {
    try {
      disposeIfDisposable(value);
    } catch (error) {
      failure ??= { error };
    }
  }
  if (failure !== null) throw failure.error;
}
