import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createKnowledgeBaseProvider, terms } from '../../src/ai/knowledge-base-provider.js';
import type { AiAnswerRequest, AiTurn, KnowledgeArticle } from '../../src/ai/index.js';

const ARTICLES: KnowledgeArticle[] = [
  {
    id: 'returns',
    title: 'Returns policy',
    body:
      'You can return any item within 30 days of delivery for a full refund. Items must be unused and in their original ' +
      'packaging. Start a return from the Orders page in your account and print the prepaid return label. Refunds reach ' +
      'your original payment method within 5 business days after we receive the parcel.',
  },
  {
    id: 'password',
    title: 'Resetting your password',
    body:
      'If you forgot your password or cannot log in, click "Forgot password?" on the sign-in page and enter the email ' +
      'address of your account. We send you a link to choose a new password; it is valid for one hour. Check your spam ' +
      'folder if the email does not arrive.',
  },
  {
    id: 'shipping',
    title: 'Shipping times',
    body:
      'Orders placed before 2 pm ship the same business day. Standard shipping takes 2-4 business days within Germany and ' +
      '4-7 days to other EU countries. Express shipping delivers the next business day. You receive a tracking number by ' +
      'email as soon as your parcel ships.',
  },
  {
    id: 'ruecksendung',
    title: 'Rücksendung und Erstattung',
    body:
      'Sie können Artikel innerhalb von 30 Tagen nach Erhalt zurücksenden. Die Ware muss unbenutzt und originalverpackt ' +
      'sein. Melden Sie die Rücksendung in Ihrem Kundenkonto unter „Bestellungen“ an und drucken Sie das kostenlose ' +
      'Rücksendeetikett aus. Die Erstattung erfolgt innerhalb von 5 Werktagen nach Eingang der Ware.',
  },
];

const request = (question: string, overrides: Partial<AiAnswerRequest> = {}): AiAnswerRequest => ({
  channelName: 'Acme Support',
  agentName: 'Mia (AI)',
  subject: 'Question',
  conversation: [{ role: 'customer', text: question }],
  articles: ARTICLES,
  ...overrides,
});

const provider = createKnowledgeBaseProvider();

describe('knowledge base provider', () => {
  it.each([
    ['How do I reset my password?', 'password'],
    ['I forgot my password and cannot log in to my account.', 'password'],
    ['How long does shipping take?', 'shipping'],
    ['Can I return an item and get a refund?', 'returns'],
    ['Wie kann ich meine Bestellung zurücksenden?', 'ruecksendung'],
    ['Wie lange dauert die Erstattung nach einer Rücksendung?', 'ruecksendung'],
    ['Wie lange dauert die Erstattung nach einer Ruecksendung?', 'ruecksendung'],
  ])('answers "%s" from the article %s with high confidence', async (question, articleId) => {
    const answer = await provider.answer(request(question));
    const article = ARTICLES.find((candidate) => candidate.id === articleId)!;
    expect(answer.sourceArticleIds).toEqual([articleId]);
    expect(answer.confidence).toBeGreaterThan(0.6);
    expect(answer.confidence).toBeLessThanOrEqual(1);
    expect(answer.text).toBe(`Here is what our help center says about ${article.title}:\n\n${article.body}`);
  });

  it.each([
    'Do you sell gift cards?',
    'What are your opening hours on Sunday?',
    'My credit card was charged twice for the same order.',
    'Hello, the VAT number on my invoice from last month is wrong.',
    'Kann ich mit PayPal bezahlen?',
  ])('has low confidence for the unrelated question "%s"', async (question) => {
    const answer = await provider.answer(request(question));
    expect(answer.confidence).toBeLessThan(0.3);
  });

  it('answers nothing with confidence 0 when there are no articles or no article shares a word with the question', async () => {
    expect(await provider.answer(request('How do I reset my password?', { articles: [] }))).toEqual({
      text: '',
      confidence: 0,
      sourceArticleIds: [],
    });
    expect(await provider.answer(request('Is the product available in blue?'))).toEqual({
      text: '',
      confidence: 0,
      sourceArticleIds: [],
    });
    expect(await provider.answer(request('Hello!!! ...'))).toEqual({ text: '', confidence: 0, sourceArticleIds: [] });
  });

  it('asks with the subject on the customer’s first mail, and with the latest mail alone later', async () => {
    const first = await provider.answer(request('I cannot find it anywhere, please help.', { subject: 'Password reset' }));
    expect(first.sourceArticleIds).toEqual(['password']);

    const conversation: AiTurn[] = [
      { role: 'customer', text: 'I cannot find it anywhere, please help.' },
      { role: 'assistant', text: 'Here is what our help center says about Resetting your password: …' },
      { role: 'customer', text: 'Thanks. And how long does shipping take to Austria?' },
    ];
    const later = await provider.answer(request('', { subject: 'Password reset', conversation }));
    expect(later.sourceArticleIds).toEqual(['shipping']);
  });

  it('has less confidence when two articles match the question equally', async () => {
    const twins = [
      { id: 'a', title: 'Gift wrapping', body: 'We wrap gifts in recycled paper for 3 euros.' },
      { id: 'b', title: 'Gift wrapping', body: 'We wrap gifts in recycled paper for 3 euros.' },
    ];
    const clear = await provider.answer(request('Do you offer gift wrapping?', { articles: twins.slice(0, 1) }));
    const ambiguous = await provider.answer(request('Do you offer gift wrapping?', { articles: twins }));
    expect(ambiguous.confidence).toBeLessThan(clear.confidence);
  });

  it('gives no answer below its minimum score', async () => {
    const strict = createKnowledgeBaseProvider({ minimumScore: 0.99 });
    expect(await strict.answer(request('How long does shipping take to Austria?'))).toEqual({
      text: '',
      confidence: 0,
      sourceArticleIds: [],
    });
    const covered = await strict.answer(request('How do I reset my password?', { subject: 'Password reset' }));
    expect(covered.sourceArticleIds).toEqual(['password']);
  });

  it('stops when the caller aborts', async () => {
    await expect(provider.answer(request('How do I reset my password?'), AbortSignal.abort())).rejects.toThrow();
  });

  it('keeps confidence within 0..1 and cites only articles it has, whatever the question', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), async (question) => {
        const answer = await provider.answer(request(question));
        expect(answer.confidence).toBeGreaterThanOrEqual(0);
        expect(answer.confidence).toBeLessThanOrEqual(1);
        expect(answer.sourceArticleIds.every((id) => ARTICLES.some((article) => article.id === id))).toBe(true);
        expect(answer.text === '').toBe(answer.sourceArticleIds.length === 0);
      }),
    );
  });
});

describe('terms', () => {
  it('drops stop words and punctuation, lower-cases, and folds umlauts however they are written', () => {
    expect(terms('How do I reset my password?')).toEqual(['reset', 'password']);
    expect(terms('Rücksendung')).toEqual(terms('Ruecksendung'));
    expect(terms('Rücksendung')).toEqual(terms('rucksendung'));
    expect(terms('Straße')).toEqual(terms('strasse'));
    expect(terms('Ich möchte die Bestellung, bitte!')).toEqual(terms('bestellung'));
  });

  it('stems lightly so that word forms meet', () => {
    expect(new Set([...terms('return returns returned returning')]).size).toBe(1);
    expect(terms('shipping')).toEqual(terms('ship'));
    expect(terms('Rücksendungen')).toEqual(terms('Rücksendung'));
    expect(terms('policies')).toEqual(terms('policy'));
  });
});
