import { describe, expect, it } from 'vitest';
import { clientTypes, committedClientTypes, servedOpenApiDocument } from '../../scripts/client-types.js';
import { createMailroomClient } from '../../src/client/mailroom-client.js';

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

  it('refuses at compile time what the document does not allow (npm run typecheck fails otherwise)', () => {
    const client = createMailroomClient('http://127.0.0.1:9', 'never-sent');
    const path = { conversationId: '00000000-0000-0000-0000-000000000000' };
    // Never called: each line must be a type error, or its @ts-expect-error is one itself.
    const misuses = [
      // @ts-expect-error: no such route
      () => client.GET('/v1/conversation'),
      // @ts-expect-error: the conversation's id is a required path parameter
      () => client.GET('/v1/conversations/{conversationId}'),
      // @ts-expect-error: a reply's text is a string
      () => client.POST('/v1/conversations/{conversationId}/replies', { params: { path }, body: { text: 42 } }),
      // @ts-expect-error: no status "pending" in the document
      () => client.GET('/v1/conversations', { params: { query: { status: 'pending' } } }),
    ];
    expect(misuses).toHaveLength(4);
  });
});
