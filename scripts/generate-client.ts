// `npm run generate:client`: writes the typed client's types (src/client/openapi.d.ts) from the OpenAPI
// document the API serves. Run it after changing a route; no server is needed.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { CLIENT_TYPES_PATH, clientTypes, committedClientTypes, servedOpenApiDocument } from './client-types.js';

const types = await clientTypes(await servedOpenApiDocument());
if (types === (await committedClientTypes())) {
  console.log(`${path.relative(process.cwd(), CLIENT_TYPES_PATH)} is up to date`);
} else {
  await mkdir(path.dirname(CLIENT_TYPES_PATH), { recursive: true });
  await writeFile(CLIENT_TYPES_PATH, types);
  console.log(`wrote ${path.relative(process.cwd(), CLIENT_TYPES_PATH)}`);
}
