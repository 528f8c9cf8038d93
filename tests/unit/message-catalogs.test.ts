import { describe, expect, it } from 'vitest';
import { detectLanguage, MAX_SCANNED } from '../../src/domain/language-detection.js';
import { catalogLanguage, CATALOG_LANGUAGES, formatDate, formatDay, message } from '../../src/domain/message-catalogs.js';
import { csatSurveyText, greetingText, outOfOfficeText } from '../../src/domain/templates.js';
import { signUnsubscribeToken, verifyUnsubscribeToken } from '../../src/domain/unsubscribe-token.js';
import { renderSignature, signedParts } from '../../src/mail/signature.js';

describe('message catalogs', () => {
  it('picks the plural form by each language’s rules', () => {
    expect(message('en', 'survey.rating', { rating: 1 })).toBe('1 star');
    expect(message('en', 'survey.rating', { rating: 4 })).toBe('4 stars');
    expect(message('de', 'survey.rating', { rating: 1 })).toBe('1 Stern');
    expect(message('de', 'survey.rating', { rating: 5 })).toBe('5 Sterne');
    expect(message('en', 'survey.validUntil', { validUntil: 'x', days: 0 })).toContain('less than a day');
    expect(message('de', 'survey.validUntil', { validUntil: 'x', days: 1 })).toContain('noch 1 Tag');
    expect(message('de', 'survey.validUntil', { validUntil: 'x', days: 7 })).toContain('noch 7 Tage');
  });

  it('has every message in every language', () => {
    for (const language of CATALOG_LANGUAGES) {
      expect(message(language, 'greeting.default')).not.toBe('');
      expect(message(language, 'page.title')).not.toBe('');
    }
    expect(message('de', 'greeting.default')).not.toBe(message('en', 'greeting.default'));
  });

  it('writes dates in the customer’s locale and the channel’s time zone', () => {
    const at = new Date('2026-12-07T08:00:00Z'); // 09:00 in Berlin (CET)
    expect(formatDate('de', at, 'Europe/Berlin')).toBe('7. Dezember 2026 um 09:00 MEZ');
    expect(formatDate('en', at, 'Europe/Berlin')).toMatch(/^December 7, 2026 at 9:00\sAM GMT\+1$/);
    // Late in the evening in New York is the next day in Berlin.
    const evening = new Date('2026-12-07T23:30:00Z');
    expect(formatDay('de', evening, 'Europe/Berlin')).toBe('8. Dezember 2026');
    expect(formatDay('en', evening, 'America/New_York')).toBe('December 7, 2026');
  });

  it('falls back to the channel’s first language with a catalog, then English', () => {
    expect(catalogLanguage('de', ['en'])).toBe('de');
    expect(catalogLanguage('de-AT', [])).toBe('de');
    expect(catalogLanguage(null, ['fr', 'de', 'en'])).toBe('de');
    expect(catalogLanguage('fr', ['fr'])).toBe('en');
  });

  it('keeps the admin’s texts as written, per language where given', () => {
    const texts = { text: 'Thanks, we are on it.', texts: { de: 'Danke, wir kümmern uns.' } };
    expect(greetingText(texts, 'de')).toBe('Danke, wir kümmern uns.');
    expect(greetingText(texts, 'en')).toBe('Thanks, we are on it.');
    expect(greetingText({ text: null }, 'de')).toBe(message('de', 'greeting.default'));
    expect(outOfOfficeText({ text: null }, 'de', '7. Dezember 2026 um 09:00 MEZ')).toContain(
      'Wir sind ab 7. Dezember 2026 um 09:00 MEZ wieder für Sie da.',
    );
  });

  it('puts one link per rating and the unsubscribe link into the survey', () => {
    const text = csatSurveyText({
      language: 'de',
      ratingUrl: (rating) => `https://mail.example/csat/t?rating=${rating}`,
      validUntilText: '8. Dezember 2026',
      daysValid: 3,
      unsubscribeUrl: 'https://mail.example/unsubscribe/surveys/u',
    });
    for (const rating of [1, 2, 3, 4, 5]) expect(text).toContain(`https://mail.example/csat/t?rating=${rating}`);
    expect(text).toContain('1 Stern: https://mail.example/csat/t?rating=1');
    expect(text).toContain('Keine Umfragen mehr von uns: https://mail.example/unsubscribe/surveys/u');
  });
});

describe('language detection', () => {
  it('tells German from English among the channel’s languages', () => {
    const german = 'Hallo, ich habe meine Rechnung nicht bekommen. Können Sie mir bitte helfen? Danke';
    const english = 'Hello, I did not get my invoice. Can you please help me with this? Thanks';
    expect(detectLanguage(german, ['de', 'en'])).toBe('de');
    expect(detectLanguage(english, ['de', 'en'])).toBe('en');
    // Restricted to the channel's languages: German is not among them.
    expect(detectLanguage(german, ['en', 'fr'])).toBeNull();
  });

  it('says nothing when it cannot tell: no common words, a tie, languages it has no words for', () => {
    expect(detectLanguage('Invoice 4711', ['de', 'en'])).toBeNull();
    expect(detectLanguage('und and', ['de', 'en'])).toBeNull();
    expect(detectLanguage('und ist das ich', ['xx'])).toBeNull();
  });

  it('reads a bounded prefix of hostile input (no pattern, one pass)', () => {
    const hostile = `${'a'.repeat(5_000_000)} und ist das`;
    expect(detectLanguage(hostile, ['de', 'en'])).toBeNull(); // the German words lie past the scanned prefix
    expect(detectLanguage(`und ist das ${'{'.repeat(MAX_SCANNED * 100)}`, ['de', 'en'])).toBe('de');
  });
});

describe('signatures', () => {
  it('fills in the agent and the channel, the agent’s own before the channel’s', () => {
    const names = { agentName: 'Alice <Agent>', channelName: 'Acme & Co' };
    const channel = { text: '{{ agent.name }} – {{channel.name}}', html: '<p><b>{{agent.name}}</b> {{channel.name}}</p>' };
    expect(renderSignature([channel], names)).toEqual({
      text: 'Alice <Agent> – Acme & Co',
      html: '<p><b>Alice &lt;Agent&gt;</b> Acme &amp; Co</p>',
    });
    expect(renderSignature([{ text: 'Alice', html: null }, channel], names)).toEqual({ text: 'Alice', html: null });
    expect(
      renderSignature(
        [
          { text: null, html: null },
          { text: null, html: null },
        ],
        names,
      ),
    ).toBeNull();
  });

  it('keeps only the markup inbound mail may keep in an HTML signature (a logo stays, scripts go)', () => {
    const signature = renderSignature(
      [{ text: null, html: '<p onclick="x()">Hi<script>alert(1)</script><img src="https://t.example/p.gif"></p>' }],
      { agentName: 'A', channelName: 'C' },
    );
    expect(signature?.html).toBe('<p>Hi<img src="https://t.example/p.gif" /></p>');
  });

  it('goes below the body in both parts', () => {
    const parts = signedParts(
      { text: 'Hello', html: '<html><body><p>Hello</p></body></html>' },
      { text: 'Alice', html: '<b>Alice</b>' },
    );
    expect(parts.text).toBe('Hello\n\n-- \nAlice');
    expect(parts.html).toBe('<html><body><p>Hello</p><div class="signature"><b>Alice</b></div>\n</body></html>');
  });
});

describe('unsubscribe token', () => {
  it('names the contact, cannot be forged', () => {
    const contactId = '6f1c2d3e-4b5a-4c6d-8e7f-9a0b1c2d3e4f';
    const token = signUnsubscribeToken(contactId, 'secret');
    expect(verifyUnsubscribeToken(token, 'secret')).toBe(contactId);
    expect(verifyUnsubscribeToken(token, 'other secret')).toBeNull();
    expect(verifyUnsubscribeToken(`${'0'.repeat(36)}.${token.split('.')[1]}`, 'secret')).toBeNull();
    expect(verifyUnsubscribeToken('x'.repeat(200), 'secret')).toBeNull();
  });
});
