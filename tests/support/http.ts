/** Small HTTP helpers so tests read like the API calls a backend service makes. */

export async function postMail(apiUrl: string, channel: { id: string; forwarderSecret: string }, raw: Buffer | string) {
  const response = await fetch(`${apiUrl}/v1/channels/${channel.id}/inbound`, {
    method: 'POST',
    headers: { authorization: `Bearer ${channel.forwarderSecret}`, 'content-type': 'message/rfc822' },
    body: typeof raw === 'string' ? raw : new Uint8Array(raw),
  });
  return { status: response.status, contentType: response.headers.get('content-type'), body: (await response.json()) as any };
}

export async function callApi(apiUrl: string, apiKey: string, method: string, path: string, body?: unknown) {
  const response = await fetch(`${apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${apiKey}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body: text ? (JSON.parse(text) as any) : undefined,
  };
}

/** Polls until `check` returns a value (not undefined) or throws its last error after the timeout. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 30_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw lastError ?? new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * POSTs an endless body (chunked, no Content-Length) until the server answers; returns the answer and
 * how many bytes the server made us produce. A server without a body limit would read it to the end.
 */
export async function postEndlessBody(url: string, headers: Record<string, string>, maxBytes = 4 * 1024 ** 3) {
  const chunk = new Uint8Array(64 * 1024).fill(0x61); // "aaaa…"
  let produced = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (produced >= maxBytes) return controller.close();
      produced += chunk.length;
      controller.enqueue(chunk);
    },
  });
  const response = await fetch(url, { method: 'POST', headers, body, duplex: 'half' } as RequestInit);
  await response.arrayBuffer();
  return { status: response.status, contentType: response.headers.get('content-type'), produced };
}
