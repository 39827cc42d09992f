/**
 * How values cross to a worker and back so that they arrive as `Array.map` would have left them.
 * Plain structured clone (what `postMessage` and advanced IPC do on their own) changes a few:
 *
 * - a thread receives a `Buffer` as a plain `Uint8Array`;
 * - a process receives typed arrays that are views into the whole message, not arrays of their own;
 * - a value that cannot be cloned fails inside the pool library, where no item can be named.
 *
 * So every payload (items, results, a call's set-up) is turned into bytes here, with V8's
 * serializer: a `Buffer` stays a `Buffer`, every view is read back as a copy of its own bytes, a
 * failure is thrown here, and a thread gets the bytes moved rather than copied. Typed arrays over
 * a `SharedArrayBuffer` travel beside the bytes, so a thread sees the very same memory.
 */
import { DefaultDeserializer, DefaultSerializer } from 'node:v8';

export interface Payload {
  readonly bytes: Uint8Array;
  /** Shared memory the value refers to; it crosses by reference, to threads only. */
  readonly shared?: readonly SharedArrayBuffer[];
}

/** Wraps `value` for the trip. Throws (as structured clone would) when a value cannot be sent. */
export function encode(value: unknown): Payload {
  const serializer = new ViewSerializer();
  serializer.writeHeader();
  serializer.writeValue(value);
  const bytes = serializer.releaseBuffer();
  return serializer.shared.length === 0 ? { bytes } : { bytes, shared: serializer.shared };
}

/** Unwraps a payload made by {@link encode}. */
export function decode(payload: Payload): unknown {
  const deserializer = new ViewDeserializer(payload.bytes, payload.shared ?? []);
  deserializer.readHeader();
  return deserializer.readValue();
}

/** The buffers a payload can hand over instead of copying (threads only). */
export function transferList(payloads: readonly (Payload | undefined)[]): ArrayBuffer[] {
  const list: ArrayBuffer[] = [];
  for (const payload of payloads) {
    const bytes = payload?.bytes;
    // Only a buffer the bytes own whole: a view into a larger one would hand that one over.
    if (bytes !== undefined && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) {
      list.push(bytes.buffer as ArrayBuffer);
    }
  }
  return list;
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

  _writeHostObject(object: object): void {
    const view = object as ArrayBufferView;
    this.writeUint32(viewTypeIndex(view));
    if (view.buffer instanceof SharedArrayBuffer) {
      let index = this.shared.indexOf(view.buffer);
      if (index < 0) index = this.shared.push(view.buffer) - 1;
      this.writeUint32(SHARED_MEMORY);
      this.writeUint32(index);
      this.writeDouble(view.byteOffset);
      this.writeDouble(view.byteLength);
      return;
    }
    this.writeUint32(OWN_BYTES);
    this.writeUint32(view.byteLength);
    this.writeRawBytes(new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
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
