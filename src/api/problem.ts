import { z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';

// Every error a client sees is RFC 9457 problem+json, built here and nowhere else.

export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: 'https://mailroom.dev/problems/validation' }),
    title: z.string().openapi({ example: 'Request validation failed' }),
    status: z.number().int().openapi({ example: 422 }),
    detail: z.string().optional(),
    errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
    newMessages: z
      .array(
        z.object({
          id: z.uuid(),
          direction: z.enum(['inbound', 'outbound']),
          from: z.string().nullable(),
          authorId: z.uuid().nullable(),
          at: z.iso.datetime(),
          text: z.string().nullable(),
        }),
      )
      .optional()
      .openapi({ description: 'A reply collision (409 reply-collision): what was written since the message the agent saw' }),
  })
  .openapi('Problem');

export type ProblemBody = z.infer<typeof ProblemSchema>;

/** Thrown anywhere in a request; the app's error handler turns it into problem+json. */
export class Problem extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly slug: string,
    readonly title: string,
    readonly detail?: string,
    readonly errors?: ProblemBody['errors'],
    /** Headers the answer carries besides the problem (Allow on a 405). */
    readonly headers: Record<string, string> = {},
    /** Members beside the standard ones (RFC 9457 extensions), e.g. newMessages of a reply collision. */
    readonly extensions: Partial<Pick<ProblemBody, 'newMessages'>> = {},
  ) {
    super(detail ?? title);
  }

  body(): ProblemBody {
    return {
      type: `https://mailroom.dev/problems/${this.slug}`,
      title: this.title,
      status: this.status,
      ...(this.detail ? { detail: this.detail } : {}),
      ...(this.errors ? { errors: this.errors } : {}),
      ...this.extensions,
    };
  }
}

export function problemResponse(c: Context, problem: Problem): Response {
  return c.body(JSON.stringify(problem.body()), problem.status, {
    ...problem.headers,
    'content-type': 'application/problem+json',
  });
}

/** What every 429 carries, for the OpenAPI document. */
export const retryAfterHeader = {
  'Retry-After': {
    description: 'Seconds until the rate limit allows another request',
    required: true,
    schema: { type: 'integer' as const, minimum: 1 },
  },
};

/** OpenAPI response entries for the problems a route can answer with. */
export function problemResponses(...statuses: number[]) {
  const descriptions: Record<number, string> = {
    400: 'The body is not well-formed (e.g. malformed JSON)',
    401: 'Missing or wrong credentials',
    403: 'Not allowed for this role',
    404: 'No such resource in this account',
    405: 'The path does not answer this method; Allow lists those it does',
    409: 'Conflicts with the current state',
    413: 'The body is larger than allowed',
    415: 'The body must be sent as JSON (Content-Type: application/json)',
    422: 'A field is invalid',
    429: 'Too many requests: over the rate limit the detail names; retry after Retry-After seconds',
    503: 'A backing service is unavailable; retry later',
  };
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      {
        description: descriptions[status] ?? 'Problem',
        ...(status === 429 ? { headers: retryAfterHeader } : {}),
        content: { 'application/problem+json': { schema: ProblemSchema } },
      },
    ]),
  );
}
