/**
 * How values cross to a worker and back so that they arrive as `Array.map` would have left them.
 * Plain structured clone (what `postMessage` and advanced IPC do on their own) changes a few:
 *
 * - a thread receives a `Buffer` as a plain `Uint8Array`;
 * - a process receives typed arrays that are views into the whole message, not arrays of their own;
 * - a value that cannot be cloned fails inside the pool library, where no item can be named.
 *
 * None of these can happen to plain data: primitives, and arrays and plain objects of them. Such a
 * value travels as it is, by the channel's own structured clone, which carries strings at two to
 * three times the speed of a serializer driven from JavaScript. Anything else is turned into bytes
 * here, with V8's serializer: a `Buffer` stays a `Buffer`, every view is read back as a copy of its
 * own bytes, a failure is thrown here, and a thread gets the bytes moved rather than copied. Typed
 * arrays over a `SharedArrayBuffer` travel beside the bytes, so a thread sees the very same memory.
 */
import { types } from 'node:util';
import { DefaultDeserializer, DefaultSerializer } from 'node:v8';

/**
 * The engine's own accessors of binary data. A subclass may override `buffer`, `byteOffset` or
 * `byteLength` with getters that throw or lie; the bytes sent are the view's real ones, whatever
 * they say, as `postMessage` itself would send them.
 */
const realGetter = (prototype: object, name: string): ((this: unknown) => unknown) =>
  Object.getOwnPropertyDescriptor(prototype, name)?.get as (this: unknown) => unknown;
const TYPED_ARRAY = Object.getPrototypeOf(Uint8Array.prototype) as object;
const viewGetters = (prototype: object) => ({
  buffer: realGetter(prototype, 'buffer') as (this: unknown) => ArrayBufferLike,
  byteOffset: realGetter(prototype, 'byteOffset') as (this: unknown) => number,
  byteLength: realGetter(prototype, 'byteLength') as (this: unknown) => number,
});
const typedArrayGetters = viewGetters(TYPED_ARRAY);
const dataViewGetters = viewGetters(DataView.prototype);
const arrayBufferBytes = realGetter(ArrayBuffer.prototype, 'byteLength') as (this: unknown) => number;
const sharedBufferBytes = realGetter(SharedArrayBuffer.prototype, 'byteLength') as (this: unknown) => number;

/** A view's memory as the engine knows it (see `realGetter`). */
export function viewMemory(view: ArrayBufferView): { buffer: ArrayBufferLike; byteOffset: number; byteLength: number } {
  const getters = types.isDataView(view) ? dataViewGetters : typedArrayGetters;
  return {
    buffer: getters.buffer.call(view),
    byteOffset: getters.byteOffset.call(view),
    byteLength: getters.byteLength.call(view),
  };
}

/** The bytes of binary data (a view, an ArrayBuffer, a SharedArrayBuffer), or `undefined` for anything else. */
export function binaryBytes(value: object): number | undefined {
  if (ArrayBuffer.isView(value)) return viewMemory(value).byteLength;
  if (types.isArrayBuffer(value)) return arrayBufferBytes.call(value);
  if (types.isSharedArrayBuffer(value)) return sharedBufferBytes.call(value);
  return undefined;
}

/** A value made into bytes here. */
export interface EncodedPayload {
  readonly bytes: Uint8Array;
  /** Shared memory the value refers to; it crosses by reference, to threads only. */
  readonly shared?: readonly SharedArrayBuffer[];
}

/** Plain data, carried as it is by the channel's structured clone. */
export interface PlainPayload {
  readonly plain: unknown;
  /** About how many bytes it takes on its way (for chunk sizing). */
  readonly size: number;
}

/** A list of numbers only, packed into one block of bytes: see {@link encodeList}. */
export interface NumbersPayload {
  readonly numbers: Float64Array;
}

export type Payload = EncodedPayload | PlainPayload | NumbersPayload;

/**
 * A chunk's items or results on the main side: an array, or a list of numbers kept packed while
 * its chunk is on its way (see {@link NumberBuffers}), read by index like the array it stands for.
 */
export type ChunkValues = readonly unknown[] | Float64Array;

/** Shorter lists of numbers are not worth a buffer of their own. */
const PACK_AT_LEAST = 64;

/**
 * Wraps a chunk's items or results. A list of numbers only, the commonest chunk, crosses as one
 * Float64Array rather than as a value each: structured clone writes and reads every element with
 * a tag of its own, which on 2M numbers cost the main thread several times the packing. Every
 * number comes back the same (-0, NaN and the infinities too); any other element leaves the list
 * to {@link encode}.
 */
export function encodeList(values: ChunkValues, sharing: Sharing = 'shared'): Payload {
  // Numbers kept packed cross as a copy: the copy may be moved to a thread, the caller keeps its own.
  if (values instanceof Float64Array) return { numbers: values.slice() };
  if (packable(values)) return { numbers: packInto(new Float64Array(values.length), values) };
  // The list is parmap's own array (a chunk's items or results): only its elements need a look.
  const size = plainElementsSize(values, 0);
  return size === undefined ? serialized(values, sharing) : { plain: values, size };
}

/**
 * Where the value goes: a thread shares the memory of typed arrays over a SharedArrayBuffer; a
 * child process cannot, and such a view is refused with an error saying so.
 */
export type Sharing = 'shared' | 'unshared';

/** Whether a list is numbers only, and long enough to be worth packing. */
function packable(values: readonly unknown[]): boolean {
  if (values.length < PACK_AT_LEAST || Object.getPrototypeOf(values) !== Array.prototype) return false;
  for (let i = 0; i < values.length; i++) if (typeof values[i] !== 'number') return false;
  return true;
}

function packInto(numbers: Float64Array, values: readonly unknown[]): Float64Array {
  for (let i = 0; i < values.length; i++) numbers[i] = values[i] as number;
  return numbers;
}

/** The array a list of numbers kept packed stands for; an array as it is. */
export function unpacked(values: ChunkValues): unknown[] {
  return values instanceof Float64Array ? unpackNumbers(values) : (values as unknown[]);
}

/**
 * Buffers for a call's chunks of numbers, used again from chunk to chunk. The scheduler keeps a
 * chunk's items until its results are in (to send them again should its worker be lost), and its
 * results until the caller has read them. Kept as arrays, the items and results of a stream's
 * chunks in flight (eight lists of 8,000 numbers, half a megabyte) were alive at every
 * young-generation collection, and V8 doubled the young generation to make room for them. Packed
 * into fresh Float64Arrays, they were not on the heap, but any whose small array object lived long
 * enough to be promoted kept its buffer allocated until the next full collection (20 MB over a
 * stream of 2,000,000 numbers). Buffers used again cost neither: only as many exist as chunks are
 * in flight at once, however long the stream.
 */
export class NumberBuffers {
  private readonly free: Float64Array[] = [];
  private readonly own = new WeakSet<ArrayBufferLike>();

  /** @param most the most buffers kept for later while not in use */
  constructor(private readonly most: number) {}

  /** `values` packed into a buffer of this pool, when they are numbers only (and enough of them). */
  pack(values: ChunkValues): Float64Array | undefined {
    if (values instanceof Float64Array || !packable(values)) return undefined;
    return packInto(this.take(values.length), values);
  }

  /** A copy of `numbers` in a buffer of this pool. */
  copy(numbers: Float64Array): Float64Array {
    const copy = this.take(numbers.length);
    copy.set(numbers);
    return copy;
  }

  /** Takes back a buffer of this pool, which nothing may read afterwards; other values are ignored. */
  release(values: unknown): void {
    if (!(values instanceof Float64Array) || !this.own.has(values.buffer)) return;
    const { buffer } = values;
    if (this.free.length < this.most && !this.free.some((free) => free.buffer === buffer)) {
      this.free.push(new Float64Array(buffer));
    }
  }

  private take(length: number): Float64Array {
    for (let i = this.free.length - 1; i >= 0; i--) {
      const free = this.free[i] as Float64Array;
      if (free.length < length) continue;
      this.free.splice(i, 1);
      return free.length === length ? free : free.subarray(0, length);
    }
    // None large enough: one too small goes, so that chunks growing to their size leave none behind.
    this.free.pop();
    const fresh = new Float64Array(length);
    this.own.add(fresh.buffer);
    return fresh;
  }
}

function unpackNumbers(numbers: Float64Array): number[] {
  const values = new Array<number>(numbers.length);
  for (let i = 0; i < numbers.length; i++) values[i] = numbers[i] as number;
  return values;
}

/** Wraps `value` for the trip. Throws (as structured clone would) when a value cannot be sent. */
export function encode(value: unknown, sharing: Sharing = 'shared'): Payload {
  const size = plainSize(value, 0);
  return size === undefined ? serialized(value, sharing) : { plain: value, size };
}

function serialized(value: unknown, sharing: Sharing): EncodedPayload {
  const serializer = new ViewSerializer(sharing === 'shared');
  serializer.writeHeader();
  serializer.writeValue(value);
  const bytes = serializer.releaseBuffer();
  return serializer.shared.length === 0 ? { bytes } : { bytes, shared: serializer.shared };
}

/** Unwraps a payload made by {@link encode}. */
export function decode(payload: Payload): unknown {
  if ('plain' in payload) return payload.plain;
  if ('numbers' in payload) return unpackNumbers(payload.numbers);
  const deserializer = new ViewDeserializer(payload.bytes, payload.shared ?? []);
  deserializer.readHeader();
  return deserializer.readValue();
}

/**
 * `value` as bytes that can go to another machine (a remote worker): always through the
 * serializer, and never shared memory, which cannot leave this process.
 */
export function toBytes(value: unknown): Uint8Array {
  const serializer = new ViewSerializer(false, 'another machine');
  serializer.writeHeader();
  serializer.writeValue(value);
  return serializer.releaseBuffer();
}

/** Reads bytes made by {@link toBytes}. */
export function fromBytes(bytes: Uint8Array): unknown {
  return decode({ bytes });
}

/**
 * The place of the first of `items` that `send` refuses, to name the item when a chunk as a whole
 * could not be sent; 0 when each goes alone (the chunk failed as a whole).
 */
export function firstUnsendable(items: ArrayLike<unknown>, send: (value: unknown) => unknown): number {
  for (let at = 0; at < items.length; at++) {
    try {
      send(items[at]);
    } catch {
      return at;
    }
  }
  return 0;
}

/** About how many bytes a payload takes on its way. */
export function payloadSize(payload: Payload): number {
  if ('plain' in payload) return payload.size;
  return 'numbers' in payload ? payload.numbers.byteLength : payload.bytes.byteLength;
}

/** The buffers a payload can hand over instead of copying (threads only). */
export function transferList(payloads: readonly (Payload | undefined)[]): ArrayBuffer[] {
  const list: ArrayBuffer[] = [];
  for (const payload of payloads) {
    if (payload === undefined || 'plain' in payload) continue;
    const bytes = 'numbers' in payload ? payload.numbers : payload.bytes;
    // Only a buffer the bytes own whole: a view into a larger one would hand that one over.
    if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
      list.push(bytes.buffer as ArrayBuffer);
    }
  }
  return list;
}

/** Deeper values are rare in items; past this depth (or a cycle) the serializer takes over. */
const MAX_PLAIN_DEPTH = 6;

/**
 * Arrays inside a value longer than this go to the serializer: telling whether an array has
 * properties besides its elements means listing its keys (about 70 ns each), and a property that
 * holds a Buffer, a function or a shared view must not reach the channel's own clone.
 */
const MAX_PLAIN_ARRAY = 1024;

/**
 * The approximate size of a value that is plain data, or `undefined` as soon as some part of it
 * is not: a view, a class instance, a Map, a Proxy, a function. The walk stops there, so a value
 * that is not plain costs little to check.
 */
function plainSize(value: unknown, depth: number): number | undefined {
  switch (typeof value) {
    case 'string':
      return value.length + 5;
    case 'number':
    case 'boolean':
    case 'undefined':
      return 9;
    case 'bigint':
      return 17;
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value === null) return 1;
  if (depth >= MAX_PLAIN_DEPTH || types.isProxy(value)) return undefined;
  const prototype = Object.getPrototypeOf(value);
  let size = 8;
  if (Array.isArray(value)) {
    if (prototype !== Array.prototype || value.length > MAX_PLAIN_ARRAY || !elementsOnly(value)) return undefined;
    return plainElementsSize(value, depth);
  }
  if (prototype !== Object.prototype && prototype !== null) return undefined;
  for (const key of Object.keys(value)) {
    const part = plainSize((value as Record<string, unknown>)[key], depth + 1);
    if (part === undefined) return undefined;
    size += key.length + part;
  }
  return size;
}

/**
 * The size of an array's elements, if each is plain data. Numbers and strings, the usual items,
 * are sized here rather than by a call each: a chunk of numbers is checked in half the time.
 * Holes travel as the serializer would carry them: it is the same one.
 */
function plainElementsSize(values: readonly unknown[], depth: number): number | undefined {
  let size = 8;
  for (let i = 0; i < values.length; i++) {
    const part: unknown = values[i];
    if (typeof part === 'number') size += 9;
    else if (typeof part === 'string') size += part.length + 5;
    else {
      const partSize = plainSize(part, depth + 1);
      if (partSize === undefined) return undefined;
      size += partSize;
    }
  }
  return size;
}

/**
 * Whether an array's own enumerable keys are indices only: keys list indices first, then names,
 * so the last is an index when there are no names. A numeric name past the indices (`'4294967296'`
 * is no index) is a name.
 */
function elementsOnly(array: readonly unknown[]): boolean {
  const keys = Object.keys(array);
  const last = keys[keys.length - 1];
  return last === undefined || (/^(?:0|[1-9]\d*)$/.test(last) && Number(last) < array.length);
}

const VIEW_TYPES = [
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  DataView,
  BigInt64Array,
  BigUint64Array,
  Buffer,
] as const;
type ViewType = (typeof VIEW_TYPES)[number];

function viewTypeIndex(view: ArrayBufferView): number {
  if (Buffer.isBuffer(view)) return VIEW_TYPES.length - 1;
  for (let i = 0; i < VIEW_TYPES.length - 1; i++) {
    if (view instanceof (VIEW_TYPES[i] as ViewType)) return i;
  }
  throw new TypeError(`${Object.prototype.toString.call(view)} could not be cloned.`);
}

const OWN_BYTES = 0;
const SHARED_MEMORY = 1;

class ViewSerializer extends DefaultSerializer {
  readonly shared: SharedArrayBuffer[] = [];

  /**
   * @param sharing whether views of shared memory may go (to a thread, as that very memory)
   * @param destination where the value goes when they may not, as an error names it
   */
  constructor(
    private readonly sharing: boolean,
    private readonly destination = 'a process worker',
  ) {
    super();
  }

  _writeHostObject(object: object): void {
    const view = object as ArrayBufferView;
    this.writeUint32(viewTypeIndex(view));
    const { buffer, byteOffset, byteLength } = viewMemory(view);
    if (types.isSharedArrayBuffer(buffer)) {
      if (!this.sharing) {
        throw new TypeError(
          `shared memory (a view of a SharedArrayBuffer) cannot go to ${this.destination}: copy it into an ordinary typed array` +
            (this.destination === 'a process worker' ? `, or use workerType: 'thread', whose workers share it` : ''),
        );
      }
      let index = this.shared.indexOf(buffer);
      if (index < 0) index = this.shared.push(buffer) - 1;
      this.writeUint32(SHARED_MEMORY);
      this.writeUint32(index);
      this.writeDouble(byteOffset);
      this.writeDouble(byteLength);
      return;
    }
    this.writeUint32(OWN_BYTES);
    this.writeUint32(byteLength);
    this.writeRawBytes(new Uint8Array(buffer, byteOffset, byteLength));
  }

  _getSharedArrayBufferId(): number {
    throw new TypeError(
      'A SharedArrayBuffer cannot be sent on its own: wrap it in a typed array (new Uint8Array(sab)), which reaches threads as shared memory.',
    );
  }
}

class ViewDeserializer extends DefaultDeserializer {
  constructor(
    bytes: Uint8Array,
    private readonly shared: readonly SharedArrayBuffer[],
  ) {
    super(bytes);
  }

  _readHostObject(): unknown {
    const Type = VIEW_TYPES[this.readUint32()] as ViewType;
    let memory: ArrayBufferLike;
    let byteOffset = 0;
    let byteLength: number;
    if (this.readUint32() === SHARED_MEMORY) {
      const buffer = this.shared[this.readUint32()];
      if (buffer === undefined) throw new TypeError('parmap: shared memory is missing from a message');
      memory = buffer;
      byteOffset = this.readDouble();
      byteLength = this.readDouble();
    } else {
      byteLength = this.readUint32();
      const raw = this.readRawBytes(byteLength);
      // A copy: the view must own exactly its bytes, not the whole message.
      memory = raw.buffer.slice(raw.byteOffset, raw.byteOffset + byteLength);
    }
    if (Type === Buffer) return Buffer.from(memory, byteOffset, byteLength);
    if (Type === DataView) return new DataView(memory, byteOffset, byteLength);
    const elementSize = (Type as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
    return new (Type as new (buffer: ArrayBufferLike, offset: number, length: number) => ArrayBufferView)(
      memory,
      byteOffset,
      byteLength / elementSize,
    );
  }
}
