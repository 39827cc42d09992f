/**
 * Holds results that finished early until every result before them has been handed out, so an
 * ordered call yields in input order. Keyed by chunk sequence number, counting from 0.
 */
import { IdMap } from '../id-map.js';

export class ReorderBuffer<T extends object> {
  /** An {@link IdMap}: a `Map` would keep every chunk's results alive (see id-map.ts). */
  private readonly waiting = new IdMap<T>();
  private next = 0;

  /** The sequence number of the next chunk to hand out. */
  get nextSequence(): number {
    return this.next;
  }

  /** Stores the value of chunk `sequence`. Each sequence number may be stored once. */
  put(sequence: number, value: T): void {
    if (sequence < this.next || this.waiting.has(sequence)) {
      throw new Error(`ReorderBuffer: chunk ${sequence} was stored twice`);
    }
    this.waiting.set(sequence, value);
  }

  /** The value of the next chunk in order, or `undefined` if it has not arrived yet. */
  takeNext(): T | undefined {
    const value = this.waiting.get(this.next);
    if (value === undefined) return undefined;
    this.waiting.delete(this.next);
    this.next++;
    return value;
  }

  /** Chunks stored but not yet taken. */
  get size(): number {
    return this.waiting.size;
  }
}
