// The engine's own view of caller memory. A Uint8Array a caller hands in may
// lie: an own `length`, `byteLength`, `byteOffset` or `buffer` property, a
// subclass's getter or method, a Proxy. Sizes handed to libc (the epoll
// backend) or used to copy come from the engine's internal slots instead,
// read through the %TypedArray%.prototype getters captured here at module
// load and applied with Reflect.apply, which nothing on the object can shadow.

const TypedArrayPrototype = Object.getPrototypeOf(Uint8Array.prototype);

function intrinsicGetter(key: PropertyKey): (this: unknown) => unknown {
  return Object.getOwnPropertyDescriptor(TypedArrayPrototype, key)!.get!;
}

const getByteLength = intrinsicGetter("byteLength");
const getByteOffset = intrinsicGetter("byteOffset");
const getBuffer = intrinsicGetter("buffer");
// [[TypedArrayName]]: "Uint8Array" for a Uint8Array (a subclass's instance
// included), another name for another typed array, undefined for anything
// else, a Proxy included. It never throws.
const getTypedArrayName = intrinsicGetter(Symbol.toStringTag);
// Throws a TypeError for a detached or out-of-bounds view (the engine's
// ValidateTypedArray), and does nothing else.
const validate = TypedArrayPrototype.keys as (this: unknown) => unknown;
const apply = Reflect.apply;
const NO_ARGUMENTS: [] = [];

/**
 * The typed array kind of `value` ("Uint8Array", "Int16Array"...), or
 * `undefined` for anything else, a Proxy or an imitation included.
 */
export function typedArrayName(value: unknown): string | undefined {
  return apply(getTypedArrayName, value, NO_ARGUMENTS) as string | undefined;
}

/** Whether `value` is a real Uint8Array (or a subclass's instance). */
export function isUint8Array(value: unknown): value is Uint8Array {
  return typedArrayName(value) === "Uint8Array";
}

/**
 * The length of `view` in bytes as the engine knows it, whatever its
 * properties say: 0 when detached or out of bounds.
 *
 * @throws {TypeError} when `view` is not a typed array (a Proxy included).
 */
export function byteLengthOf(view: Uint8Array): number {
  return apply(getByteLength, view, NO_ARGUMENTS) as number;
}

/**
 * Whether `view` views memory: its buffer is not detached and it is within
 * the bounds of its buffer (a resizable buffer may have shrunk below it).
 */
export function isInBounds(view: Uint8Array): boolean {
  try {
    apply(validate, view, NO_ARGUMENTS);
    return true;
  } catch {
    return false;
  }
}

/**
 * A plain Uint8Array of this module's making over exactly the memory the
 * real Uint8Array `view` covers now: writes through one show in the other,
 * and its length, offset and methods are the engine's. A view that tracks a
 * resizable buffer's length is taken at its current length.
 *
 * @throws {TypeError} from the engine when `view` views no memory (see
 *   {@linkcode isInBounds}).
 */
export function ownView(view: Uint8Array): Uint8Array {
  return new Uint8Array(
    apply(getBuffer, view, NO_ARGUMENTS) as ArrayBufferLike,
    apply(getByteOffset, view, NO_ARGUMENTS) as number,
    apply(getByteLength, view, NO_ARGUMENTS) as number,
  );
}
