import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { automaticMailBlock, suppressionReasonCode, type AutomaticMailCheck } from '../../src/domain/loop-safety.js';
import { mayScrape } from '../../src/observability/metrics-endpoint.js';
import { idsOfWorkflow, PinoTemporalLogger } from '../../src/observability/temporal-runtime.js';

const conversationId = '3ebc611f-1b1d-4561-b0d6-d2d9ac8f9263';
const channelId = '0f6f8f5e-2a7b-4f65-9d3e-4f1c2b3a4d5e';

describe('the Temporal runtime’s lines through pino', () => {
  function capture() {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
    return { lines, temporal: new PinoTemporalLogger(logger) };
  }

  it('carries the conversation’s or the channel’s id read from the workflow id', () => {
    expect(idsOfWorkflow(`conversation-${conversationId}`)).toEqual({ conversationId });
    expect(idsOfWorkflow(`mailbox-${channelId}`)).toEqual({ channelId });
    expect(idsOfWorkflow(`assignment-queue-${channelId}`)).toEqual({ channelId });
    expect(idsOfWorkflow('mail-reconciler-mailroom')).toEqual({});
    expect(idsOfWorkflow(`conversation-${conversationId}-and-more`)).toEqual({});
    expect(idsOfWorkflow(undefined)).toEqual({});

    const { lines, temporal } = capture();
    temporal.warn('Activity failed', { workflowId: `conversation-${conversationId}`, activityType: 'sendGreeting' });
    temporal.debug('Workflow started', { workflowId: `mailbox-${channelId}` });
    expect(lines[0]).toMatchObject({ level: 40, msg: 'Activity failed', conversationId, activityType: 'sendGreeting' });
    expect(lines[1]).toMatchObject({ level: 20, channelId });
  });

  it('maps every SDK level and drops only the mailbox worker’s “no workflows” warning', () => {
    const { lines, temporal } = capture();
    temporal.log('TRACE', 'a');
    temporal.info('b');
    temporal.error('c');
    temporal.warn('No workflows registered, not polling for workflow tasks', { taskQueue: 'mailroom-mailbox' });
    temporal.warn('No workflows registered, not polling for workflow tasks', { taskQueue: 'mailroom' });
    expect(lines.map((line) => [line.level, line.msg])).toEqual([
      [10, 'a'],
      [30, 'b'],
      [50, 'c'],
      [40, 'No workflows registered, not polling for workflow tasks'],
    ]);
  });
});

describe('who may scrape /metrics', () => {
  it('loopback always; anyone else only with the configured token', () => {
    expect(mayScrape('127.0.0.1', undefined, undefined)).toBe(true);
    expect(mayScrape('::1', undefined, undefined)).toBe(true);
    expect(mayScrape('::ffff:127.0.0.1', undefined, undefined)).toBe(true);
    expect(mayScrape('10.0.0.7', undefined, undefined)).toBe(false);
    expect(mayScrape('10.0.0.7', 'Bearer anything', undefined)).toBe(false);
    expect(mayScrape('10.0.0.7', 'Bearer wrong-token', 'scrape-token')).toBe(false);
    expect(mayScrape('10.0.0.7', 'Bearer scrape-token', 'scrape-token')).toBe(true);
    expect(mayScrape('10.0.0.7', 'Basic scrape-token', 'scrape-token')).toBe(false);
    expect(mayScrape(undefined, undefined, 'scrape-token')).toBe(false);
  });
});

describe('why automatic mail was held back, as a metric label', () => {
  const base: AutomaticMailCheck = {
    recipient: 'ann@example.com',
    channelAddress: 'support@acme.example',
    sentLastHour: 0,
    limitPerHour: 3,
  };
  const cases: [AutomaticMailCheck, string][] = [
    [{ ...base, recipient: null }, 'address_unknown'],
    [{ ...base, recipient: 'support@acme.example' }, 'own_address'],
    [{ ...base, recipient: 'no-reply@example.com' }, 'no_reply_address'],
    [{ ...base, latestMail: { senderVerdict: 'spam', senderReasons: [], imported: false } }, 'spam'],
    [
      { ...base, latestMail: { senderVerdict: 'unverified', senderReasons: ['dmarc=fail'], imported: false } },
      'unverified_sender',
    ],
    [{ ...base, latestMail: { senderVerdict: 'ordinary', senderReasons: [], imported: true } }, 'imported'],
    [{ ...base, sentLastHour: 3 }, 'recipient_limit'],
    [{ ...base, sentToDomainLastHour: 50, limitPerDomainPerHour: 50 }, 'domain_limit'],
    [{ ...base, sentByChannelLastHour: 500, limitPerChannelPerHour: 500 }, 'channel_limit'],
  ];

  it.each(cases)('each reason the loop-safety rules give has its own code (%#)', (check, code) => {
    const reason = automaticMailBlock(check);
    expect(reason).not.toBeNull();
    expect(suppressionReasonCode(reason!)).toBe(code);
  });

  it('a reason from elsewhere is “other”, whatever a recipient’s domain says', () => {
    expect(suppressionReasonCode('the contact unsubscribed from surveys')).toBe('unsubscribed');
    expect(suppressionReasonCode('something new')).toBe('other');
  });
});
