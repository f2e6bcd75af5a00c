/**
 * A bounded, ordered pipeline: start an async step (image decoding) on the next items while the
 * consumer works on the current one (an onnxruntime run), with at most `ahead` items started beyond
 * the one being consumed, and results handed over in input order.
 */

/**
 * `fn` over `items`, in order. While the consumer handles result i, fn has been started on at most
 * items i+1 … i+ahead (ahead = 0: one at a time, as a plain loop). An error from fn or from the
 * source is raised at its own position, after every earlier result. Stopping early (break, throw)
 * closes the source; steps already started run to their end and are dropped.
 */
export async function* mapAhead<T, R>(
  items: AsyncIterable<T> | Iterable<T>,
  fn: (item: T) => Promise<R>,
  ahead: number,
): AsyncGenerator<R> {
  if (!(Number.isInteger(ahead) && ahead >= 0))
    throw new RangeError(`mapAhead: ahead must be an integer ≥ 0, got ${ahead}`);
  const it: AsyncIterator<T> | Iterator<T> =
    Symbol.asyncIterator in items
      ? (items as AsyncIterable<T>)[Symbol.asyncIterator]()
      : (items as Iterable<T>)[Symbol.iterator]();
  const pending: Promise<R>[] = [];
  let done = false;
  const fill = async () => {
    while (!done && pending.length < ahead + 1) {
      let p: Promise<R>;
      try {
        const r = await it.next();
        if (r.done) {
          done = true;
          break;
        }
        p = fn(r.value);
      } catch (e) {
        done = true; // the source failed: its error takes the next place in line
        p = Promise.reject(e);
      }
      p.catch(() => {}); // handled where it is awaited, in order; never an unhandled rejection meanwhile
      pending.push(p);
    }
  };
  try {
    await fill();
    while (pending.length) {
      const v = await pending.shift()!;
      yield v;
      await fill();
    }
  } finally {
    if (!done) {
      done = true;
      await it.return?.();
    }
  }
}
