interface CryptoLike {
  randomUUID?: () => string;
  getRandomValues?: <T extends Uint8Array>(array: T) => T;
}

/**
 * A random UUID (v4) for `client_msg_id`. `crypto.randomUUID` exists only in secure contexts in
 * browsers (https, localhost), so this falls back to `getRandomValues`, then to `Math.random`.
 */
export function randomId(): string {
  const crypto = (globalThis as { crypto?: CryptoLike }).crypto;
  if (typeof crypto?.randomUUID === 'function') return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (typeof crypto?.getRandomValues === 'function') crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The length of `text` encoded as UTF-8, in bytes. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      bytes += 4;
      i++;
    } else bytes += 3;
  }
  return bytes;
}

/** A token's `exp` and `iat` claims, in ms since the epoch by the issuer's clock. */
export interface TokenTimes {
  expiresAt: number;
  /** Undefined when the token carries no numeric `iat`. */
  issuedAt: number | undefined;
}

/**
 * When a JWT was issued and expires, read from its `iat` and `exp` claims without verifying it
 * (the gateway verifies; the client only needs to know when to fetch the next one). Undefined
 * for anything that is not a JWT with a numeric `exp`.
 */
export function tokenTimes(token: string): TokenTimes | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined || payload.length === 0) return undefined;
  try {
    const base64 = payload
      .replace(/-/g, '+')
      .replace(/_/g, '/')
      .padEnd(Math.ceil(payload.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (char) => char.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as { exp?: unknown; iat?: unknown };
    const seconds = (claim: unknown) => (typeof claim === 'number' && Number.isFinite(claim) ? claim * 1000 : undefined);
    const expiresAt = seconds(claims.exp);
    return expiresAt === undefined ? undefined : { expiresAt, issuedAt: seconds(claims.iat) };
  } catch {
    return undefined;
  }
}
