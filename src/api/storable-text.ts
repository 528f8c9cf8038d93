import { createMiddleware } from 'hono/factory';
import type { AppEnv } from './env.js';
import { Problem } from './problem.js';

// PostgreSQL's text and jsonb cannot hold U+0000. Rather than each schema guarding each field (and a
// forgotten one answering 500), every /v1 request is checked once here: a NUL anywhere in the URL or
// the JSON body is a 422 naming where it is.

const NUL = '\u0000';

/** The paths (field names joined by ".") of strings and keys holding NUL. */
export function nulPaths(value: unknown, path: Array<string | number> = []): string[] {
  if (typeof value === 'string') return value.includes(NUL) ? [path.join('.') || 'body'] : [];
  if (Array.isArray(value)) return value.flatMap((item, index) => nulPaths(item, [...path, index]));
  if (value && typeof value === 'object') {
    return Object.entries(value).flatMap(([key, item]) =>
      key.includes(NUL) ? [[...path, key].join('.')] : nulPaths(item, [...path, key]),
    );
  }
  return [];
}

export const rejectNul = createMiddleware<AppEnv>(async (c, next) => {
  const url = new URL(c.req.url);
  const fields = /%00/i.test(url.pathname) ? ['path'] : [];
  for (const [name, value] of url.searchParams) if (value.includes(NUL) || name.includes(NUL)) fields.push(name);
  if ((c.req.header('content-type') ?? '').includes('json')) {
    // Malformed JSON is left to the route's validator, which names it.
    const body: unknown = await c.req.json().catch(() => undefined);
    fields.push(...nulPaths(body));
  }
  if (fields.length > 0) {
    throw new Problem(
      422,
      'validation',
      'Request validation failed',
      'text must not contain the character U+0000',
      fields.map((field) => ({ field, message: 'must not contain the character U+0000' })),
    );
  }
  await next();
});
