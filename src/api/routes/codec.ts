import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Payload, PayloadCodec } from '@temporalio/common';
import type { MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { every } from 'hono/combine';
import { cors } from 'hono/cors';
import { createMiddleware } from 'hono/factory';
import { PayloadDecryptionError } from '../../temporal/payload-codec.js';
import { requireAdmin } from '../auth.js';
import type { ApiDeps, AppEnv } from '../env.js';
import { Problem, problemResponses } from '../problem.js';

// The codec server of the Temporal Web UI and CLI (`temporal workflow show --codec-endpoint … --codec-auth …`):
// what Temporal stores is encrypted, and ops read it decoded here, with an admin's API key. The protocol is
// Temporal's: POST {payloads: [{metadata: {name: base64}, data: base64}]} to …/decode or …/encode.

export const CODEC_PATH = '/codec';
/** A history event's payloads in one request (the UI decodes an event at a time); encrypted mail stays far below. */
export const MAX_CODEC_BODY_BYTES = 8 * 1024 * 1024;
export const MAX_CODEC_PAYLOADS = 1000;
const MAX_METADATA_ENTRIES = 32;
const MAX_METADATA_BYTES = 4096;

// Standard base64 (what protobuf JSON writes), checked without backtracking.
const base64 = (description: string, maxLength: number) =>
  z
    .string()
    .max(maxLength)
    .regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64')
    .openapi({ description, format: 'byte' });

const CodecPayloadSchema = z
  .object({
    metadata: z
      .record(z.string().min(1).max(256), base64('a metadata value', MAX_METADATA_BYTES))
      .refine((metadata) => Object.keys(metadata).length <= MAX_METADATA_ENTRIES, `at most ${MAX_METADATA_ENTRIES} entries`)
      .optional()
      .openapi({ description: 'Metadata by name, each value base64 (e.g. encoding: "binary/encrypted")' }),
    data: base64('The payload, base64', MAX_CODEC_BODY_BYTES).optional(),
  })
  .openapi('CodecPayload');

const CodecPayloadsSchema = z
  .object({ payloads: z.array(CodecPayloadSchema).max(MAX_CODEC_PAYLOADS) })
  .openapi('CodecPayloads', { description: 'Payloads as Temporal writes them in JSON (protobuf JSON of Payload)' });

const namespaceHeader = z.object({
  'x-namespace': z
    .string()
    .max(255)
    .optional()
    .openapi({ description: 'The namespace the payloads are from (sent by the Temporal UI); one set of keys serves all' }),
});

function codecRoute(direction: 'decode' | 'encode') {
  const decode = direction === 'decode';
  return createRoute({
    method: 'post',
    path: `${CODEC_PATH}/${direction}`,
    operationId: decode ? 'decodePayloads' : 'encodePayloads',
    tags: ['Operations'],
    summary: decode
      ? 'Decrypt payloads Temporal stores (codec server)'
      : 'Encrypt payloads as Mailroom writes them (codec server)',
    description:
      (decode
        ? 'Decrypts payloads of Temporal histories (workflow inputs, signals, results, summaries, failure messages) with the ' +
          "deployment's keys; payloads that are not encrypted come back as they are. "
        : 'Encrypts payloads with the current key, as the Temporal UI does for input it sends to a workflow. ') +
      `Admins only. At most ${MAX_CODEC_PAYLOADS} payloads and ${MAX_CODEC_BODY_BYTES} bytes a request. ` +
      'Browsers from TEMPORAL_UI_ORIGIN may call it (CORS).',
    security: [{ apiKey: [] }],
    request: {
      headers: namespaceHeader,
      body: { required: true, content: { 'application/json': { schema: CodecPayloadsSchema } } },
    },
    responses: {
      200: {
        description: decode ? 'The payloads decoded, in the order given' : 'The payloads encrypted, in the order given',
        content: { 'application/json': { schema: CodecPayloadsSchema } },
      },
      ...problemResponses(401, 403, 413, 422, 429),
    },
  });
}

type CodecPayloadJson = z.infer<typeof CodecPayloadSchema>;

function fromJson({ metadata = {}, data = '' }: CodecPayloadJson): Payload {
  return {
    metadata: Object.fromEntries(Object.entries(metadata).map(([name, value]) => [name, Buffer.from(value, 'base64')])),
    data: Buffer.from(data, 'base64'),
  };
}

function toJson(payload: Payload): CodecPayloadJson {
  return {
    metadata: Object.fromEntries(
      Object.entries(payload.metadata ?? {}).map(([name, value]) => [name, Buffer.from(value).toString('base64')]),
    ),
    data: Buffer.from(payload.data ?? []).toString('base64'),
  };
}

/** One payload through the codecs (decoding in reverse order, as the SDK does); a payload that fails is named. */
async function convert(codecs: readonly PayloadCodec[], direction: 'decode' | 'encode', payloads: Payload[]) {
  const ordered = direction === 'decode' ? [...codecs].reverse() : codecs;
  const problems: Array<{ field: string; message: string }> = [];
  const converted = await Promise.all(
    payloads.map(async (payload, index) => {
      try {
        let result = [payload];
        for (const codec of ordered) result = await codec[direction](result);
        return result[0]!;
      } catch (error) {
        if (!(error instanceof PayloadDecryptionError)) throw error;
        problems.push({ field: `payloads.${index}`, message: error.message });
        return payload;
      }
    }),
  );
  if (problems.length > 0)
    throw new Problem(422, 'undecodable-payload', 'A payload cannot be decoded', problems[0]!.message, problems);
  return converted;
}

/**
 * What guards the codec endpoint, in this order: CORS (the preflight is answered before any key is asked for),
 * the body limit, then `authenticate` (an API key) and an admin's role. With `codecFromLoopback` (`npm start`
 * only, for the dev server's Web UI, which cannot send a key) `loopbackOrKey` lets this machine through without one.
 */
export function codecAccess(
  deps: Pick<ApiDeps, 'config' | 'codecFromLoopback'>,
  authenticate: MiddlewareHandler<AppEnv>,
  loopbackOrKey: (requireKey: MiddlewareHandler<AppEnv>) => MiddlewareHandler<AppEnv>,
): MiddlewareHandler<AppEnv> {
  const origins = deps.config.TEMPORAL_UI_ORIGIN ?? [];
  const adminOnly = createMiddleware<AppEnv>(async (c, next) => {
    requireAdmin(c.get('user'), 'may read or write what Temporal stores');
    await next();
  });
  const keyed = every(authenticate, adminOnly);
  return every(
    cors({
      origin: (origin) => (origins.includes(origin) ? origin : null),
      allowMethods: ['POST', 'OPTIONS'],
      allowHeaders: ['authorization', 'content-type', 'x-namespace'],
      // The UI's "include cross-origin credentials" setting sends cookies along.
      credentials: true,
      maxAge: 600,
    }),
    bodyLimit({
      maxSize: MAX_CODEC_BODY_BYTES,
      onError: () => {
        throw new Problem(413, 'too-large', 'Request body too large', `the limit is ${MAX_CODEC_BODY_BYTES} bytes`);
      },
    }),
    deps.codecFromLoopback ? loopbackOrKey(keyed) : keyed,
  );
}

/** POST /codec/decode and /codec/encode, with the codecs of the API's own Temporal client. */
export function codecRoutes(deps: Pick<ApiDeps, 'temporal'>) {
  const app = new OpenAPIHono<AppEnv>();
  for (const direction of ['decode', 'encode'] as const) {
    app.openapi(codecRoute(direction), async (c) => {
      const { payloads } = c.req.valid('json');
      const codecs = deps.temporal.options.loadedDataConverter.payloadCodecs;
      const converted = await convert(codecs, direction, payloads.map(fromJson));
      return c.json({ payloads: converted.map(toJson) }, 200);
    });
  }
  return app;
}
