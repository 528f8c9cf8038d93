import { describe, expect, it } from 'vitest';
import {
  FROM_NAME_TOKENS,
  SUBJECT_TOKENS,
  outgoingFromName,
  outgoingSubject,
  templateProblem,
} from '../../src/domain/outgoing-templates.js';
import { textToHtml } from '../../src/mail/text-html.js';

const startedAt = new Date('2026-03-29T00:30:00Z');

describe('outgoing subject (A6)', () => {
  const base = { conversationSubject: 'Parcel missing', startedAt, timeZone: 'Europe/Berlin' };

  it.each([
    ['the typed subject wins', { typed: ' Your parcel ', defaultSubject: 'Ticket {{conversation.started_at}}' }, 'Your parcel'],
    ['the conversation subject with Re: without a default', { defaultSubject: null }, 'Re: Parcel missing'],
    ['a blank default counts as none', { defaultSubject: '  ' }, 'Re: Parcel missing'],
    [
      'the start in the channel time zone',
      { defaultSubject: 'Ticket of {{conversation.started_at}}' },
      'Ticket of 2026-03-29 01:30 +01:00',
    ],
    ['spaces inside the braces', { defaultSubject: 'Ticket {{ conversation.started_at }}' }, 'Ticket 2026-03-29 01:30 +01:00'],
    ['a default without tokens as it is', { defaultSubject: 'Acme support' }, 'Acme support'],
  ])('%s', (_name, input, expected) => {
    expect(outgoingSubject({ ...base, ...input })).toBe(expected);
  });

  it('shows the start after a DST change in the summer offset', () => {
    const summer = outgoingSubject({
      ...base,
      startedAt: new Date('2026-03-29T01:30:00Z'),
      defaultSubject: '{{conversation.started_at}}',
    });
    expect(summer).toBe('2026-03-29 03:30 +02:00');
  });
});

describe('outgoing From name (A7)', () => {
  it.each([
    ['an agent without a template', { template: null, senderName: 'Alice Agent' }, 'Alice Agent (Acme Support)'],
    ['mail nobody wrote without a template', { template: null, senderName: null }, 'Acme Support'],
    ['the agent in the template', { template: '{{agent.name}} from Acme', senderName: 'Alice Agent' }, 'Alice Agent from Acme'],
    [
      'the channel name for mail nobody wrote',
      { template: '{{agent.name}} from Acme', senderName: null },
      'Acme Support from Acme',
    ],
    ['a template without a token', { template: 'Acme', senderName: 'Alice Agent' }, 'Acme'],
  ])('%s', (_name, input, expected) => {
    expect(outgoingFromName({ channelName: 'Acme Support', ...input })).toBe(expected);
  });
});

describe('template validation', () => {
  it('accepts known tokens and text without tokens', () => {
    expect(templateProblem('Ticket {{conversation.started_at}}', Object.values(SUBJECT_TOKENS))).toBeNull();
    expect(templateProblem('{{ agent.name }} at Acme', Object.values(FROM_NAME_TOKENS))).toBeNull();
    expect(templateProblem('Plain', Object.values(FROM_NAME_TOKENS))).toBeNull();
  });

  it('names an unknown token and the allowed ones', () => {
    expect(templateProblem('{{agent.nmae}}', Object.values(FROM_NAME_TOKENS))).toBe(
      'unknown token {{agent.nmae}}; allowed: {{agent.name}}',
    );
    expect(templateProblem('{{agent.name}}', Object.values(SUBJECT_TOKENS))).toMatch(/^unknown token/);
  });
});

describe('the HTML part of outgoing mail', () => {
  it('escapes the text, keeps paragraphs and line breaks, links web addresses', () => {
    const html = textToHtml('Hi <Zoë> & co,\r\n\r\nsee https://example.com/a?b=1&c=2.\nThanks\n\n\n');
    expect(html).toContain('<p>Hi &lt;Zoë&gt; &amp; co,</p>');
    expect(html).toContain(
      '<p>see <a href="https://example.com/a?b=1&amp;c=2">https://example.com/a?b=1&amp;c=2</a>.<br>\nThanks</p>',
    );
    expect(html.match(/<p>/g)).toHaveLength(2);
  });

  it('never turns a javascript: or quoted text into a link', () => {
    const html = textToHtml('javascript:alert(1) "https://x.example" onclick=');
    expect(html).not.toContain('<a href="javascript');
    expect(html).toContain('&quot;<a href="https://x.example">https://x.example</a>&quot;');
  });
});
