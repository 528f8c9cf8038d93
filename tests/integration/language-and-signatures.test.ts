import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/servers/tools.js';
import { message } from '../../src/domain/message-catalogs.js';
import { createChannel } from '../../src/db/seed.js';
import { readAsRecipient } from '../../src/mail/outgoing.js';
import type { CapturedMail } from '../../src/mail/smtp-capture.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';
import { customerMail } from '../support/mail.js';

// Issue 12: automatic mail and the rating page in the customer's language, signatures of the channel and the
// agent, the survey's rating links and its one-click unsubscribe, and the preview of automatic mail from settings
// being edited, all through the API, the workflows and the SMTP server on loopback.

const GERMAN = 'Hallo, ich habe meine Rechnung nicht bekommen. Können Sie mir bitte helfen? Danke';
const ENGLISH = 'Hello, I did not get my invoice. Can you please help me with this? Thanks';

describe('the customer’s language and signatures', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  const tag = randomUUID().slice(0, 8);
  const admin = (method: string, path: string, body?: unknown) => callApi(stack.api.url, team.admin.apiKey, method, path, body);

  beforeAll(async () => {
    // The API and the worker's links agree on where the API is, as one deployment's PUBLIC_URL does.
    const port = await freePort();
    stack = await startTestStack({ api: { port, publicUrl: `http://127.0.0.1:${port}` } });
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      csat: { delaySeconds: 0, linkValiditySeconds: 7 * 86_400 },
    });
    const configured = await admin('PATCH', `/v1/channels/${team.channel.id}`, {
      languages: ['de', 'en'],
      greeting: { enabled: true, text: null, texts: { en: 'Thanks for writing to {{channel.name}}, we are on it.' } },
      signature: { text: '{{agent.name}} · {{channel.name}}', html: '<p><b>{{agent.name}}</b> · {{channel.name}}</p>' },
    });
    expect(configured.status).toBe(200);
    expect(configured.body.signature).toEqual({
      text: '{{agent.name}} · {{channel.name}}',
      html: '<p><b>{{agent.name}}</b> · {{channel.name}}</p>',
    });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  /** A customer's first mail; returns the conversation, its greeting and the customer's address. */
  async function customerWrites(text: string, name: string) {
    const address = `${name}.${tag}@example.com`;
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: `${randomUUID()}@example.com`, from: `${name} <${address}>`, subject: 'Rechnung', text }),
    );
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    const greeting = await stack.capture.waitFor(
      (mail) => mail.envelope.to.includes(address) && mail.headers['auto-submitted'] === 'auto-replied',
    );
    await eventually(async () => {
      const { body } = await admin('GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? true : undefined;
    });
    return { conversationId, address, greeting };
  }

  async function resolvedSurvey(conversationId: string, address: string): Promise<CapturedMail> {
    expect((await admin('POST', `/v1/conversations/${conversationId}/resolve`)).status).toBe(200);
    return stack.capture.waitFor((mail) => mail.envelope.to.includes(address) && mail.headers['list-unsubscribe'] !== undefined);
  }

  it('greets, surveys and shows the rating page in German to a German customer, in English to an English one', async () => {
    const german = await customerWrites(GERMAN, 'greta');
    expect((await admin('GET', `/v1/conversations/${german.conversationId}`)).body.language).toBe('de');
    // No German greeting text was given: Mailroom's German words, with the channel's signature.
    expect(german.greeting.text).toContain(message('de', 'greeting.default'));
    expect(german.greeting.text).toContain('-- \nAcme Support · Acme Support');

    const english = await customerWrites(ENGLISH, 'emma');
    expect((await admin('GET', `/v1/conversations/${english.conversationId}`)).body.language).toBe('en');
    // The admin's English text, as written.
    expect(english.greeting.text).toContain('Thanks for writing to {{channel.name}}, we are on it.');

    const survey = await resolvedSurvey(german.conversationId, german.address);
    expect(survey.subject).toMatch(/^Wie zufrieden waren Sie\?/);
    expect(survey.text).toContain('Ihr Anliegen wurde gelöst.');
    const links = [1, 2, 3, 4, 5].map((rating) => {
      const link = new RegExp(`(http\\S+/csat/\\S+\\?rating=${rating})`).exec(survey.text)?.[1];
      expect(link).toBeDefined();
      return link!;
    });
    expect(survey.text).toContain(`${message('de', 'survey.rating', { rating: 1 })}: ${links[0]}`);
    expect(survey.text).toContain(`${message('de', 'survey.rating', { rating: 5 })}: ${links[4]}`);

    // A link opens the German page with its rating chosen, and records nothing (link scanners follow links).
    const page = await fetch(links[3]!);
    expect(page.status).toBe(200);
    const body = await page.text();
    expect(body).toContain('<html lang="de">');
    expect(body).toContain('Wie zufrieden sind Sie mit unserer Hilfe?');
    expect(body).toMatch(/value="4"\s+checked/);
    expect(body).not.toMatch(/value="3"\s+checked/);
    const surveyRow = () =>
      stack.db
        .selectFrom('csat_surveys')
        .select('rating')
        .where('conversation_id', '=', german.conversationId)
        .executeTakeFirstOrThrow();
    expect((await surveyRow()).rating).toBeNull();
    // The page's POST records it, with German thanks.
    const submitted = await fetch(links[3]!, { method: 'POST', body: new URLSearchParams({ rating: '4' }) });
    expect(submitted.status).toBe(200);
    expect(await submitted.text()).toContain('Ihre Bewertung 4/5 wurde gespeichert.');
    await eventually(async () => ((await surveyRow()).rating === 4 ? true : undefined));

    const englishSurvey = await resolvedSurvey(english.conversationId, english.address);
    expect(englishSurvey.subject).toMatch(/^How did we do\?/);
    expect(englishSurvey.text).toContain('1 star: http');
    const englishPage = await (await fetch(/(http\S+\/csat\/\S+\?rating=2)/.exec(englishSurvey.text)![1]!)).text();
    expect(englishPage).toContain('How satisfied are you with our help?');
  });

  it('reads only the start of a huge first mail for its language: the channel’s first language then', async () => {
    // 600 kB of one-word lines, the English words after them.
    const { conversationId, greeting } = await customerWrites(`${`${'x'.repeat(76)}\r\n`.repeat(8_000)}${ENGLISH}`, 'hugo');
    expect((await admin('GET', `/v1/conversations/${conversationId}`)).body.language).toBe('de');
    expect(greeting.text).toContain(message('de', 'greeting.default'));
  });

  it('lets an agent set the language: one of the channel’s, on the timeline', async () => {
    const { conversationId } = await customerWrites(GERMAN, 'gustav');
    const [alice] = team.agents;
    const path = `/v1/conversations/${conversationId}/language`;
    const set = await callApi(stack.api.url, alice!.apiKey, 'PUT', path, { language: 'en' });
    expect(set).toMatchObject({ status: 200, body: { language: 'en' } });
    expect((await admin('GET', `/v1/conversations/${conversationId}`)).body.language).toBe('en');

    const notOurs = await callApi(stack.api.url, alice!.apiKey, 'PUT', path, { language: 'fr' });
    expect(notOurs.status).toBe(422);
    expect(notOurs.contentType).toBe('application/problem+json');
    expect(notOurs.body.errors).toEqual([{ field: 'language', message: "the channel's languages are de, en" }]);
    const malformed = await callApi(stack.api.url, alice!.apiKey, 'PUT', path, { language: 'deutsch' });
    expect(malformed.status).toBe(422);

    const { body } = await admin('GET', `/v1/conversations/${conversationId}`);
    expect(body.timeline).toEqual(expect.arrayContaining([expect.objectContaining({ type: 'language_changed' })]));
    // From now on the survey is English.
    const survey = await resolvedSurvey(conversationId, `gustav.${tag}@example.com`);
    expect(survey.subject).toMatch(/^How did we do\?/);
  });

  it('signs replies with the agent’s signature, else the channel’s, the preview equal to the sent mail', async () => {
    const [alice, bob] = team.agents;
    // Agents set their own signature; an agent cannot set another's, an admin can.
    const own = await callApi(stack.api.url, alice!.apiKey, 'PATCH', `/v1/users/${alice!.id}`, {
      signature: { text: 'Alice from {{channel.name}}', html: '<p>Alice from <i>{{channel.name}}</i><script>x()</script></p>' },
    });
    expect(own.status).toBe(200);
    expect(own.body.signature).toEqual({
      text: 'Alice from {{channel.name}}',
      html: '<p>Alice from <i>{{channel.name}}</i></p>',
    });
    expect(
      (await callApi(stack.api.url, bob!.apiKey, 'PATCH', `/v1/users/${alice!.id}`, { signature: { text: 'x' } })).status,
    ).toBe(403);
    const unknownToken = await callApi(stack.api.url, alice!.apiKey, 'PATCH', `/v1/users/${alice!.id}`, {
      signature: { text: '{{agent.phone}}' },
    });
    expect(unknownToken.status).toBe(422);

    const { conversationId } = await customerWrites(ENGLISH, 'sam');
    for (const [agent, expected] of [
      [alice!, { text: '-- \nAlice from Acme Support', html: '<p>Alice from <i>Acme Support</i></p>' }],
      [bob!, { text: '-- \nBob Agent · Acme Support', html: '<p><b>Bob Agent</b> · Acme Support</p>' }],
    ] as const) {
      const reply = { text: `Your invoice is attached, regards ${agent.id.slice(0, 4)}` };
      const preview = await callApi(
        stack.api.url,
        agent.apiKey,
        'POST',
        `/v1/conversations/${conversationId}/replies/preview`,
        reply,
      );
      expect(preview.status).toBe(200);
      expect(preview.body.text).toContain(expected.text);
      expect(preview.body.html).toContain(expected.html);
      const sent = await callApi(stack.api.url, agent.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, reply);
      expect(sent.status).toBe(201);
      const received = await readAsRecipient((await stack.capture.waitFor((mail) => mail.messageId === sent.body.messageId)).raw);
      expect(received.text).toBe(preview.body.text);
      expect(received.html).toBe(preview.body.html);
      expect(received.headers).toEqual(preview.body.headers);
    }

    // An HTML reply gets the signature in both parts too, its text part derived from the HTML.
    const htmlReply = { html: '<p>Your invoice is <b>attached</b>.</p>' };
    const path = `/v1/conversations/${conversationId}`;
    const preview = await callApi(stack.api.url, alice!.apiKey, 'POST', `${path}/replies/preview`, htmlReply);
    expect(preview.status).toBe(200);
    expect(preview.body.html).toContain('<b>attached</b>');
    expect(preview.body.html).toContain('<div class="signature"><p>Alice from <i>Acme Support</i></p></div>');
    expect(preview.body.text).toMatch(/attached\.[\s\S]*\n-- \nAlice from Acme Support$/);
    const sent = await callApi(stack.api.url, alice!.apiKey, 'POST', `${path}/replies`, htmlReply);
    expect(sent.status).toBe(201);
    const received = await readAsRecipient((await stack.capture.waitFor((mail) => mail.messageId === sent.body.messageId)).raw);
    expect(received.text).toBe(preview.body.text);
    expect(received.html).toBe(preview.body.html);
  });

  it('signs AI answers and handover notes with the channel’s signature, as policy', async () => {
    const billing = await createChannel(stack.db, {
      accountId: team.account.id,
      name: 'Acme Billing',
      emailAddress: 'billing@acme.example',
    });
    expect(
      (await admin('PATCH', `/v1/channels/${billing.id}`, { signature: { text: '{{agent.name}} for {{channel.name}}' } })).status,
    ).toBe(200);
    await stack.db
      .insertInto('ai_agents')
      .values({ id: randomUUID(), channel_id: billing.id, name: 'Mia', position: 0, provider: 'knowledge_base' })
      .execute();
    await stack.db
      .insertInto('knowledge_articles')
      .values({
        id: randomUUID(),
        channel_id: billing.id,
        title: 'Missing invoice',
        body: 'Every invoice is in your account under Billing → Invoices. A missing invoice appears there within a day.',
      })
      .execute();
    const address = `ian.${tag}@example.com`;
    const messageId = `${randomUUID()}@example.com`;
    const mail = (id: string, text: string, inReplyTo?: string) =>
      customerMail({
        messageId: id,
        from: `Ian <${address}>`,
        to: 'billing@acme.example',
        subject: 'Invoice missing',
        text,
        ...(inReplyTo ? { inReplyTo } : {}),
      });
    expect(
      (
        await postMail(
          stack.api.url,
          billing,
          mail(messageId, 'Hello, the invoice for March is missing in my account. Where can I find the invoice?'),
        )
      ).status,
    ).toBe(202);
    const answer = await stack.capture.waitFor((m) => m.inReplyTo === `<${messageId}>`);
    expect(answer.text).toContain('Billing → Invoices');
    expect(answer.text).toMatch(/\n-- \nMia for Acme Billing$/);

    await postMail(
      stack.api.url,
      billing,
      mail(`${randomUUID()}@example.com`, 'Thanks, but I would like to talk to a real person, please.', answer.messageId!),
    );
    const handover = await stack.capture.waitFor(
      (m) => m.envelope.to.includes(address) && m.text.includes(message('en', 'handover.text')),
    );
    expect(handover.text).toMatch(/\n-- \nMia for Acme Billing$/);
  });

  it('unsubscribes a contact from surveys in one click (RFC 8058): no further survey, the timeline says why', async () => {
    const first = await customerWrites(ENGLISH, 'uma');
    const survey = await resolvedSurvey(first.conversationId, first.address);
    expect(survey.headers['list-unsubscribe-post']).toBe('List-Unsubscribe=One-Click');
    const url = /^<(http\S+\/unsubscribe\/surveys\/[^>]+)>$/.exec(survey.headers['list-unsubscribe']!)?.[1];
    expect(url).toBeDefined();
    expect(survey.text).toContain(url);

    // Following the link (a scanner, a person) only shows the button.
    const shown = await fetch(url!);
    expect(shown.status).toBe(200);
    const contact = () =>
      stack.db
        .selectFrom('contacts')
        .select('surveys_unsubscribed_at')
        .where('email', '=', first.address)
        .executeTakeFirstOrThrow();
    expect((await contact()).surveys_unsubscribed_at).toBeNull();
    // A forged token is a 404.
    expect(
      (
        await fetch(
          url!.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')),
          { method: 'POST' },
        )
      ).status,
    ).toBe(404);
    // The mail client's one-click POST.
    const unsubscribed = await fetch(url!, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'List-Unsubscribe=One-Click',
    });
    expect(unsubscribed.status).toBe(200);
    expect((await contact()).surveys_unsubscribed_at).not.toBeNull();

    // The same contact writes again later: resolved, no survey, and the timeline says why.
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({
        messageId: `${randomUUID()}@example.com`,
        from: `Uma <${first.address}>`,
        subject: 'Another one',
        text: ENGLISH,
      }),
    );
    const second: string = posted.body.conversationId;
    expect(second).not.toBe(first.conversationId);
    await eventually(async () =>
      (await admin('GET', `/v1/conversations/${second}`)).body.stage === 'assigned' ? true : undefined,
    );
    expect((await admin('POST', `/v1/conversations/${second}/resolve`)).status).toBe(200);
    const suppressed = await eventually(() =>
      stack.db
        .selectFrom('conversation_events')
        .select('data')
        .where('conversation_id', '=', second)
        .where('type', '=', 'automatic_mail_suppressed')
        .executeTakeFirst(),
    );
    expect(suppressed.data).toEqual({ kind: 'csat_survey', reason: 'the contact unsubscribed from surveys' });
    const outbound = await stack.db
      .selectFrom('outbound_messages')
      .select('kind')
      .where('conversation_id', '=', second)
      .where('kind', '=', 'csat_survey')
      .execute();
    expect(outbound).toEqual([]);
  });

  it('previews the greeting a German customer was sent exactly as it was sent', async () => {
    const { conversationId, greeting } = await customerWrites(GERMAN, 'hanna');
    const preview = await admin('POST', `/v1/channels/${team.channel.id}/automatic-mail/preview`, {
      mail: 'greeting',
      conversationId,
    });
    expect(preview.status).toBe(200);
    expect(preview.body.language).toBe('de');
    const sent = await readAsRecipient(greeting.raw);
    expect(sent.subject).toBe(preview.body.subject);
    // Previewed after the greeting went out, its References also name the greeting itself; all else is the same.
    type Header = { name: string; value: string };
    const withoutReferences = (headers: Header[]) => headers.filter((header) => header.name.toLowerCase() !== 'references');
    expect(withoutReferences(sent.headers)).toEqual(withoutReferences(preview.body.headers));
    const references = (headers: Header[]) => headers.find((header) => header.name.toLowerCase() === 'references')!.value;
    expect(references(preview.body.headers)).toBe(`${references(sent.headers)} ${greeting.messageId}`);
    expect(sent.text).toBe(preview.body.text);
    expect(sent.html).toBe(preview.body.html);
    expect(sent.text).toContain(message('de', 'greeting.default'));
  });

  it('previews an automatic mail from settings being edited exactly as it is sent once they are saved', async () => {
    const { conversationId, address } = await customerWrites(GERMAN, 'paula');
    const settings = {
      signature: { text: 'Ihr Team von {{channel.name}}', html: null },
      csat: { linkValiditySeconds: 3 * 86_400 },
    };
    const path = `/v1/channels/${team.channel.id}/automatic-mail/preview`;
    const preview = await admin('POST', path, { mail: 'survey', conversationId, settings });
    expect(preview.status).toBe(200);
    expect(preview.body.language).toBe('de');
    expect(preview.body.text).toContain('-- \nIhr Team von Acme Support');
    expect(preview.body.text).toContain('noch 3 Tage');
    // Nothing was saved.
    expect((await admin('GET', `/v1/channels/${team.channel.id}`)).body.signature.text).toBe('{{agent.name}} · {{channel.name}}');

    expect((await admin('PATCH', `/v1/channels/${team.channel.id}`, settings)).status).toBe(200);
    const sent = await readAsRecipient((await resolvedSurvey(conversationId, address)).raw);
    // The survey's own token is in the sent mail's links; the preview's names an example survey.
    const token = (text: string) => text.replace(/\/csat\/[^?"\s]+\?/g, '/csat/TOKEN?');
    expect(sent.subject).toBe(preview.body.subject);
    expect(sent.headers).toEqual(preview.body.headers);
    expect(token(sent.text)).toBe(token(preview.body.text));
    expect(token(sent.html)).toBe(token(preview.body.html));

    // Every mail and both languages; a German greeting from a draft's German text, the English one from ours.
    for (const mail of ['greeting', 'out_of_office', 'handover', 'survey']) {
      const de = await admin('POST', path, { mail, language: 'de', settings: { greeting: { texts: { de: 'Hallo!' } } } });
      expect(de.status).toBe(200);
      expect(de.body.language).toBe('de');
      expect(de.body.to).toBe('customer@example.com');
    }
    const greetingDe = await admin('POST', path, {
      mail: 'greeting',
      language: 'de',
      settings: { greeting: { texts: { de: 'Hallo!' } } },
    });
    expect(greetingDe.body.text).toMatch(/^Hallo!/);
    const handoverDe = await admin('POST', path, { mail: 'handover', language: 'de' });
    expect(handoverDe.body.text).toContain(message('de', 'handover.text'));
    // The handover note carries the channel's signature as policy.
    expect(handoverDe.body.text).toContain('-- \nIhr Team von Acme Support');

    // Bad drafts and callers are refused, naming the problem.
    const badToken = await admin('POST', path, { mail: 'greeting', settings: { signature: { text: '{{agent.email}}' } } });
    expect(badToken.status).toBe(422);
    expect(JSON.stringify(badToken.body.errors)).toContain('signature.text');
    expect((await admin('POST', path, { mail: 'invoice' })).status).toBe(422);
    expect((await callApi(stack.api.url, team.agents[0]!.apiKey, 'POST', path, { mail: 'greeting' })).status).toBe(403);
  });
});
