import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DataConverter } from '@temporalio/common';
import { AesGcmPayloadCodec, payloadKeyring, type PayloadKey } from './payload-codec.js';

// How Mailroom's payloads and failures are written to Temporal. Every Temporal Client and Worker gets this
// data converter (and every workflow bundle the failure converter): a process without it would write clear
// text into the histories, and could not read what the others wrote.

/** failure-converter.ts, or .js once compiled: the SDK loads it by path in the worker and bundles it into the workflows. */
export const FAILURE_CONVERTER_PATH = fileURLToPath(
  new URL(`./failure-converter${extname(fileURLToPath(import.meta.url))}`, import.meta.url),
);

/**
 * The data converter with these keys (the first encrypts, all decrypt). `false` leaves payloads in clear text and
 * only encodes failure attributes: for measuring what encryption costs (`npm run bench`), never for a deployment.
 */
export function mailroomDataConverter(keys: PayloadKey[] | false): DataConverter {
  return {
    failureConverterPath: FAILURE_CONVERTER_PATH,
    payloadCodecs: keys ? [new AesGcmPayloadCodec(keys)] : [],
  };
}

/** The deployment's data converter: PAYLOAD_ENCRYPTION_KEYS, then the key derived from SECRET_KEY. */
export function dataConverterFromConfig(config: {
  SECRET_KEY: string;
  PAYLOAD_ENCRYPTION_KEYS?: PayloadKey[] | undefined;
}): DataConverter {
  return mailroomDataConverter(payloadKeyring(config));
}
