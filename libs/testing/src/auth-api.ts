/**
 * POSTs JSON to the auth API (with a bearer token when given) and returns the JSON answer;
 * any status but 2xx throws, with the path, the status and the answer.
 */
export async function postJson(url: URL | string, body: unknown, token?: string): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  const json = (await response.json()) as Record<string, unknown>;
  if (!response.ok) throw new Error(`${new URL(url).pathname} answered ${response.status}: ${JSON.stringify(json)}`);
  return json;
}
