import { describe, expect, it } from 'vitest';
import { webhookEventsOf } from '../../src/webhooks/events.js';

// Which webhook events each timeline event stands for, and what their data carries (ids and facts, no mail text).
describe('webhook events of the timeline', () => {
  it('announces a new conversation before its first message, and only the message for a reply', () => {
    const first = webhookEventsOf('customer_message', {
      inboundMessageId: 'm1',
      classification: 'ordinary',
      threadedBy: 'new_conversation',
    });
    expect(first).toEqual([
      { type: 'conversation.created', data: {} },
      { type: 'message.received', data: { messageId: 'm1', classification: 'ordinary' } },
    ]);
    const reply = webhookEventsOf('customer_message', {
      inboundMessageId: 'm2',
      classification: 'auto_reply',
      threadedBy: 'reply_token',
    });
    expect(reply.map((event) => event.type)).toEqual(['message.received']);
  });

  it('names the kind of every sent mail, and tells refusals from bounces', () => {
    expect(webhookEventsOf('greeting_sent', { outboundMessageId: 'o1', authorId: null })).toEqual([
      { type: 'message.sent', data: { messageId: 'o1', kind: 'greeting', authorId: null, aiAgentId: null } },
    ]);
    expect(webhookEventsOf('answered_from_mailbox', { outboundMessageId: 'o2' })[0]!.data.kind).toBe('mailbox_reply');
    const refused = webhookEventsOf('delivery_failed', { outboundMessageId: 'o3', kind: 'reply', reason: 'x'.repeat(1000) });
    expect(refused[0]).toMatchObject({ type: 'message.failed', data: { failure: 'refused', kind: 'reply' } });
    expect((refused[0]!.data.reason as string).length).toBe(300);
    expect(webhookEventsOf('delivery_bounced', { outboundMessageId: 'o4', kind: 'reply', reason: null })[0]!.data).toMatchObject({
      failure: 'bounced',
      reason: null,
    });
  });

  it('maps assignment, resolution, reopening, SLA breach and rating; nothing for internal notes or labels', () => {
    expect(webhookEventsOf('assigned', { assigneeId: 'u1', strategy: 'load' })).toEqual([
      { type: 'conversation.assigned', data: { assigneeId: 'u1', strategy: 'load', byId: null } },
    ]);
    expect(webhookEventsOf('resolved', { resolvedBy: 'u1', resolvedByKind: 'agent' })[0]!.type).toBe('conversation.resolved');
    expect(webhookEventsOf('reopened', { assigneeId: 'u1' })[0]).toEqual({
      type: 'conversation.reopened',
      data: { assigneeId: 'u1', reopenedById: null },
    });
    expect(webhookEventsOf('sla_breached', { priority: 'high' })[0]!.type).toBe('conversation.sla_breached');
    expect(webhookEventsOf('csat_rated', { surveyId: 's1', rating: 5 })).toEqual([
      { type: 'csat.rated', data: { surveyId: 's1', rating: 5 } },
    ]);
    expect(webhookEventsOf('note_added', { text: 'internal' })).toEqual([]);
    expect(webhookEventsOf('labels_changed', { labels: ['vip'] })).toEqual([]);
  });
});
