import type { AiAnswer, AiAnswerRequest, AiProvider, KnowledgeArticle } from './provider.js';

/**
 * The offline default: no model, no network. It finds the knowledge article that best matches the customer's
 * question (BM25 over titles and bodies, English and German) and answers with that article.
 *
 * Confidence says how well the article covers the question: the share of the question's weight (inverse
 * document frequency of its words) the article contains, and of the article's title the question names, damped
 * when a second article matches almost as well.
 */
export function createKnowledgeBaseProvider(options: { minimumScore?: number } = {}): AiProvider {
  const minimumScore = options.minimumScore ?? DEFAULT_MINIMUM_SCORE;
  return {
    name: 'knowledge_base',
    async answer(request: AiAnswerRequest, signal?: AbortSignal): Promise<AiAnswer> {
      signal?.throwIfAborted();
      const match = bestArticle(request.articles, questionOf(request));
      if (!match || match.coverage < minimumScore) return { text: '', confidence: 0, sourceArticleIds: [] };
      return {
        text: `Here is what our help center says about ${match.article.title.trim()}:\n\n${match.article.body.trim()}`,
        confidence: match.confidence,
        sourceArticleIds: [match.article.id],
      };
    },
  };
}

/** Below this share of the question's weight an article is no match at all. */
const DEFAULT_MINIMUM_SCORE = 0.1;

// BM25's usual parameters; a title counts as often as this in its article.
const K1 = 1.2;
const B = 0.75;
const TITLE_WEIGHT = 2;
const UNSEEN_WORD_SHARE = 0.5;

/** The last customer mail, with the subject when it is the customer's first mail. */
function questionOf(request: AiAnswerRequest): string {
  const customerTurns = request.conversation.filter((turn) => turn.role === 'customer');
  const last = customerTurns.at(-1)?.text ?? '';
  return customerTurns.length <= 1 ? `${request.subject}\n${last}` : last;
}

export interface ArticleMatch {
  article: KnowledgeArticle;
  /** Share (0..1) of the question's weight the article contains. */
  coverage: number;
  confidence: number;
}

/** The article that answers `question` best, or undefined when none shares a word with it. */
export function bestArticle(articles: readonly KnowledgeArticle[], question: string): ArticleMatch | undefined {
  const queryTerms = [...new Set(terms(question))];
  if (articles.length === 0 || queryTerms.length === 0) return undefined;

  const documents = articles.map((article) => {
    const titleTerms = terms(article.title);
    const bodyTerms = terms(article.body);
    const frequencies = new Map<string, number>();
    const add = (term: string, count: number) => frequencies.set(term, (frequencies.get(term) ?? 0) + count);
    for (const term of titleTerms) add(term, TITLE_WEIGHT);
    for (const term of bodyTerms) add(term, 1);
    return {
      article,
      titleTerms: [...new Set(titleTerms)],
      frequencies,
      length: titleTerms.length * TITLE_WEIGHT + bodyTerms.length,
    };
  });
  const averageLength = documents.reduce((sum, document) => sum + document.length, 0) / documents.length || 1;

  /** How often `term` occurs in a document, counting related words. */
  const frequencyIn = (document: (typeof documents)[number], term: string) => {
    let count = 0;
    for (const [word, frequency] of document.frequencies) if (related(word, term)) count += frequency;
    return count;
  };
  const idfOf = (containing: number) => Math.log(1 + (documents.length - containing + 0.5) / (containing + 0.5));
  // A word no article has would weigh most of all; half that: questions carry words of their own (names, places,
  // products) that an answer need not repeat. Still, a question of such words finds nothing.
  const idf = (term: string) => {
    const containing = documents.filter((document) => frequencyIn(document, term) > 0).length;
    return containing > 0 ? idfOf(containing) : UNSEEN_WORD_SHARE * idfOf(0);
  };
  const weights = new Map(queryTerms.map((term) => [term, idf(term)]));
  const totalWeight = queryTerms.reduce((sum, term) => sum + weights.get(term)!, 0);

  const scored = documents
    .map((document) => {
      let score = 0;
      let coveredWeight = 0;
      for (const term of queryTerms) {
        const frequency = frequencyIn(document, term);
        if (frequency === 0) continue;
        const weight = weights.get(term)!;
        coveredWeight += weight;
        score += (weight * (frequency * (K1 + 1))) / (frequency + K1 * (1 - B + (B * document.length) / averageLength));
      }
      return { document, score, coverage: totalWeight > 0 ? coveredWeight / totalWeight : 0 };
    })
    .sort((a, b) => b.score - a.score);

  const [best, second] = scored;
  if (!best || best.score <= 0) return undefined;

  // The title says what the article is about: a question that names it is about that.
  let titleWeight = 0;
  let namedTitleWeight = 0;
  for (const term of best.document.titleTerms) {
    const weight = idf(term);
    titleWeight += weight;
    if (queryTerms.some((queryTerm) => related(queryTerm, term))) namedTitleWeight += weight;
  }
  const titleCoverage = titleWeight > 0 ? namedTitleWeight / titleWeight : 0;
  const margin = second && second.score > 0 ? (best.score - second.score) / best.score : 1;
  // A two-word title ("Returns policy") named by half is named well enough.
  const relevance = 0.5 * best.coverage + 0.5 * Math.sqrt(titleCoverage);
  const confidence = clamp01(relevance * (0.6 + 0.4 * margin));
  return { article: best.document.article, coverage: best.coverage, confidence: Math.round(confidence * 1000) / 1000 };
}

/** The same word, or one begins or ends the other (German compounds: Passwort, Kundenpasswort, Passwortänderung). */
function related(a: string, b: string): boolean {
  if (a === b) return true;
  const [shorter, longer] = a.length <= b.length ? [a, b] : [b, a];
  return shorter.length >= MIN_COMPOUND_PART && (longer.startsWith(shorter) || longer.endsWith(shorter));
}
const MIN_COMPOUND_PART = 5;

function clamp01(value: number): number {
  return Math.min(1, Math.max(0, value));
}

// Small stop-word lists, written as people write; they are folded like the text.
const STOP_WORDS_EN =
  'a an the and or but if then than so as is are was were be been being am do does did done have has had having i me my ' +
  'mine we us our you your yours he him his she her it its they them their this that these those there here what which ' +
  'who whom whose when where why how to of in on at for with by from into onto about over under up down out off again ' +
  'still just also only too very can could would should will shall may might must not no nor any some all each every ' +
  'more most much many other such own same get got please thanks thank hi hello dear regards best kind want need know ' +
  'help tell let like one would im ive dont cant doesnt didnt isnt wont yes ok okay ' +
  // what subjects say about any mail
  're fw fwd question questions inquiry enquiry request urgent';
const STOP_WORDS_DE =
  'der die das den dem des ein eine einer eines einem einen und oder aber wenn dann als ist sind war waren sein bin bist ' +
  'seid hat habe haben hast hatte hatten wird werden wurde wurden kann können konnte muss müssen soll sollte will wollen ' +
  'möchte möchten würde ich mich mir mein meine meinen meinem meiner meines wir uns unser unsere du dich dir dein deine ' +
  'sie ihr ihre ihren ihrem ihrer ihnen er es man sich zu zum zur von vom mit auf an am im in ins für über unter bei aus ' +
  'nach vor wie was wo wann warum wer welche welcher welches nicht kein keine keinen auch noch schon nur so da dass denn ' +
  'doch ja nein mal bitte danke dank hallo guten tag sehr geehrte geehrter geehrtes damen herren gruß grüße viele vielen ' +
  'freundlichen lg mfg gibt geht gerne gern hier dort dieser diese dieses diesen diesem ' +
  'aw wg frage fragen anfrage dringend';
const STOP_WORDS = new Set([...`${STOP_WORDS_EN} ${STOP_WORDS_DE}`.split(' ').map(fold)]);

// Light stemming, applied to articles and questions alike (a stem need not be a word): "returns", "returned" and
// "returning" meet, and "Rücksendungen" and "Rücksendung". Longest suffix first, until none is left.
const SUFFIXES = ['ungen', 'ung', 'ing', 'ed', 'es', 'en', 'er', 'ly', 'e', 's'];
const MIN_STEM = 3;
const DOUBLING_SUFFIXES = new Set(['ing', 'ed', 'er', 'en']);

/** Lower-case words without accents, umlauts folded (ä, ae → a; ß → ss), stop words dropped, lightly stemmed. */
export function terms(text: string): string[] {
  const result: string[] = [];
  for (const word of fold(text).split(/[^\p{L}\p{N}]+/u)) {
    if (word.length < 2 || STOP_WORDS.has(word)) continue;
    result.push(stem(word));
  }
  return result;
}

function fold(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/ß/g, 'ss')
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .replace(/[’'`´]/g, '')
    .replace(/ae/g, 'a')
    .replace(/oe/g, 'o')
    .replace(/ue/g, 'u');
}

function stem(word: string): string {
  if (/^\p{N}+$/u.test(word)) return word;
  let stemmed = word.replace(/ies$/, 'y');
  for (let pass = 0; pass < 3; pass++) {
    const suffix = SUFFIXES.find((candidate) => stemmed.endsWith(candidate) && stemmed.length - candidate.length >= MIN_STEM);
    if (!suffix) break;
    stemmed = stemmed.slice(0, -suffix.length);
    // shipping → shipp → ship, resetting → resett → reset
    if (DOUBLING_SUFFIXES.has(suffix) && /([^aeiou])\1$/.test(stemmed)) stemmed = stemmed.slice(0, -1);
  }
  return stemmed;
}
