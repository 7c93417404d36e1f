const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** JSON payloads on the bus. Decoding never throws: a bad payload is `undefined`, for the caller's decoder to refuse. */
export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function decodeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(data));
  } catch {
    return undefined;
  }
}
