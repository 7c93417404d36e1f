import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Checks a presented API key against the configured ones in constant time: both sides are hashed
 * to equal lengths and every configured key is compared, whatever matches.
 */
export function createApiKeyChecker(apiKeys: readonly string[]) {
  const digests = apiKeys.map(digest);
  return (presented: string): boolean => {
    const candidate = digest(presented);
    let matched = false;
    for (const known of digests) matched = timingSafeEqual(known, candidate) || matched;
    return matched;
  };
}

/** The credential of an `Authorization: Bearer <credential>` header, if that is its form. */
export function bearerCredential(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer +(\S+)\s*$/i.exec(header);
  return match?.[1];
}
