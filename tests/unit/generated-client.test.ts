import { describe, expect, it } from 'vitest';
import { clientTypes, committedClientTypes, servedOpenApiDocument } from '../../scripts/client-types.js';

// The typed client is built from the document: the committed types are exactly what the routes make now.

describe('the generated client', () => {
  it('is generated from the document the API serves now (else: npm run generate:client)', async () => {
    const fresh = await clientTypes(await servedOpenApiDocument());
    const committed = await committedClientTypes();
    // A readable failure: which operations differ, not a diff of 11,000 lines.
    const operationsOf = (types: string) => [...types.matchAll(/^ {2}(\w+): \{$/gm)].map((match) => match[1]);
    expect(operationsOf(committed), 'src/client/openapi.d.ts is stale: run `npm run generate:client`').toEqual(
      operationsOf(fresh),
    );
    expect(committed === fresh, 'src/client/openapi.d.ts is stale: run `npm run generate:client`').toBe(true);
  });

  it('types the operations by the names the document gives them', async () => {
    const types = await committedClientTypes();
    for (const operationId of ['listConversations', 'getConversation', 'replyToConversation', 'deliverInboundMail']) {
      expect(types).toContain(`  ${operationId}: {`);
    }
  });
});
