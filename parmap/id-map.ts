/**
 * A map from integer keys (ids, sequence numbers) held in a plain object's elements, for tables
 * whose entries come and go once per chunk and lead to the chunk's items and results.
 *
 * Not a `Map` (or a `Set`): V8 replaces a `Map`'s hash table every few additions and deletions,
 * and the table it replaces keeps its entries and a link to its successor. Once one table is in
 * the old generation (a full collection moves every live one there), that dead table keeps its
 * successor alive through every young-generation collection, the successor the next one, and so
 * on until the next full collection; so does every entry any of them held. Tables of the chunks
 * in flight thus promoted every chunk's items and results to the old generation (a stream of
 * 1,000,000 short strings: 46 MB promoted, 33 MB without them; peak RSS growth 83 MB, 73 MB).
 * An object's elements are replaced without such a link.
 *
 * Iterates in ascending key order: the order of insertion, for keys that only grow.
 */
export class IdMap<V> implements Iterable<[number, V]> {
  private byKey: Record<number, V> = Object.create(null);
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(key: number): V | undefined {
    return this.byKey[key];
  }

  has(key: number): boolean {
    return key in this.byKey;
  }

  set(key: number, value: V): this {
    if (!(key in this.byKey)) this.count++;
    this.byKey[key] = value;
    return this;
  }

  delete(key: number): boolean {
    if (!(key in this.byKey)) return false;
    delete this.byKey[key];
    this.count--;
    return true;
  }

  clear(): void {
    this.byKey = Object.create(null);
    this.count = 0;
  }

  *keys(): IterableIterator<number> {
    for (const key in this.byKey) yield Number(key);
  }

  *values(): IterableIterator<V> {
    for (const key in this.byKey) yield this.byKey[key as unknown as number] as V;
  }

  *entries(): IterableIterator<[number, V]> {
    for (const key in this.byKey) yield [Number(key), this.byKey[key as unknown as number] as V];
  }

  [Symbol.iterator](): IterableIterator<[number, V]> {
    return this.entries();
  }
}
