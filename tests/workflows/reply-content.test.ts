import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { agentReplyUpdate, type ReplyContent } from '../../src/workflows/messages.js';
import { ALICE, useWorkflowHarness } from '../support/workflow-harness.js';

// The conversation workflow carries what a reply holds besides its text (HTML, Cc, Bcc, files) to the activity
// that writes the outbox, as the API resolved it: nothing added, nothing dropped.

describe("a reply's content in the conversation workflow", () => {
  const t = useWorkflowHarness({ beforeAll, afterAll, beforeEach });

  it('passes the content to the outbox unchanged, and none when the reply has none', async () => {
    await t.withWorker(async (taskQueue) => {
      const handle = await t.startConversation(taskQueue);
      await t.waitForStage(handle, 'assigned');
      const content: ReplyContent = {
        html: '<p>Your <b>invoice</b></p>',
        cc: ['max@example.com'],
        bcc: ['audit@example.org'],
        attachmentIds: ['0b7e3b3e-4f2a-4c55-9d1e-8f3b2f6a9c01'],
      };
      await handle.executeUpdate(agentReplyUpdate, { args: [{ author: ALICE, text: 'Your invoice', content }] });
      await handle.executeUpdate(agentReplyUpdate, { args: [{ author: ALICE, text: 'Plain' }] });
      const [withContent, plain] = await t.waitForCalls('writeAgentReply', 2);
      expect(withContent!.input.content).toEqual(content);
      expect(plain!.input).not.toHaveProperty('content');
    });
  });
});
