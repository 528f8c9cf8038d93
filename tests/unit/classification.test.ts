import { describe, expect, it } from 'vitest';
import { classifyMail, type MailHeaders } from '../../src/domain/classification.js';

describe('classifyMail', () => {
  const cases: Array<[string, MailHeaders, string | undefined, string]> = [
    ['a plain mail from a person', { subject: ['Hello'] }, 'ann@example.com', 'ordinary'],
    ['Auto-Submitted: no', { 'auto-submitted': ['no'] }, 'ann@example.com', 'ordinary'],
    ['Auto-Submitted: auto-replied', { 'auto-submitted': ['auto-replied'] }, 'ann@example.com', 'auto_reply'],
    ['Auto-Submitted: auto-generated', { 'auto-submitted': ['Auto-Generated'] }, 'ann@example.com', 'auto_reply'],
    ['X-Autoreply', { 'x-autoreply': ['yes'] }, 'ann@example.com', 'auto_reply'],
    ['X-Autorespond', { 'x-autorespond': ['yes'] }, 'ann@example.com', 'auto_reply'],
    ['X-Auto-Response-Suppress', { 'x-auto-response-suppress': ['All'] }, 'ann@example.com', 'auto_reply'],
    ['Precedence: bulk', { precedence: ['bulk'] }, 'news@example.com', 'auto_reply'],
    ['Precedence: junk', { precedence: ['junk'] }, 'news@example.com', 'auto_reply'],
    ['Precedence: list', { precedence: ['list'] }, 'news@example.com', 'auto_reply'],
    ['Precedence: auto_reply', { precedence: ['auto_reply'] }, 'ann@example.com', 'auto_reply'],
    ['Precedence: first-class', { precedence: ['first-class'] }, 'ann@example.com', 'ordinary'],
    ['List-Id', { 'list-id': ['<news.example.com>'] }, 'news@example.com', 'auto_reply'],
    ['List-Unsubscribe', { 'list-unsubscribe': ['<mailto:u@example.com>'] }, 'news@example.com', 'auto_reply'],
    [
      'a delivery-status report',
      { 'content-type': ['multipart/report; report-type=delivery-status; boundary="x"'] },
      'someone@example.com',
      'bounce',
    ],
    ['an empty Return-Path', { 'return-path': ['<>'] }, 'someone@example.com', 'bounce'],
    ['X-Failed-Recipients', { 'x-failed-recipients': ['ann@example.com'] }, 'someone@example.com', 'bounce'],
    ['a mail from MAILER-DAEMON', {}, 'MAILER-DAEMON@mx.example.com', 'bounce'],
    ['a mail from postmaster', {}, 'postmaster@example.com', 'bounce'],
  ];

  it.each(cases)('classifies %s', (_name, headers, from, expected) => {
    expect(classifyMail(headers, from)).toBe(expected);
  });
});
