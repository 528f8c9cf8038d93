// The language of a customer's mail, among the channel's languages: the one whose common words the mail uses
// most. One pass over at most MAX_SCANNED characters, words split without a pattern: linear in the input.

const COMMON_WORDS: Record<string, readonly string[]> = {
  en: [
    'the',
    'and',
    'is',
    'to',
    'of',
    'my',
    'you',
    'your',
    'for',
    'with',
    'not',
    'have',
    'this',
    'please',
    'thanks',
    'hello',
    'it',
    'we',
    'are',
    'can',
  ],
  de: [
    'der',
    'die',
    'das',
    'und',
    'ist',
    'ich',
    'nicht',
    'mit',
    'mein',
    'meine',
    'sie',
    'ihr',
    'ein',
    'eine',
    'bitte',
    'danke',
    'hallo',
    'wir',
    'auf',
    'für',
    'zu',
    'es',
    'habe',
    'kann',
  ],
  fr: [
    'le',
    'la',
    'les',
    'et',
    'est',
    'je',
    'ne',
    'pas',
    'mon',
    'ma',
    'vous',
    'votre',
    'pour',
    'avec',
    'merci',
    'bonjour',
    'une',
    'un',
    'nous',
  ],
  es: [
    'el',
    'la',
    'los',
    'las',
    'y',
    'es',
    'yo',
    'no',
    'mi',
    'usted',
    'su',
    'para',
    'con',
    'gracias',
    'hola',
    'una',
    'un',
    'por',
    'que',
  ],
  nl: [
    'de',
    'het',
    'een',
    'en',
    'is',
    'ik',
    'niet',
    'mijn',
    'u',
    'uw',
    'voor',
    'met',
    'bedankt',
    'dank',
    'hallo',
    'wij',
    'we',
    'op',
  ],
  it: [
    'il',
    'lo',
    'la',
    'gli',
    'e',
    'è',
    'io',
    'non',
    'mio',
    'mia',
    'lei',
    'suo',
    'per',
    'con',
    'grazie',
    'ciao',
    'una',
    'un',
    'che',
  ],
};

const WORD_SETS = new Map(Object.entries(COMMON_WORDS).map(([language, words]) => [language, new Set(words)]));

/** The first characters of a mail are enough to tell its language. */
export const MAX_SCANNED = 4_000;

function isLetter(char: string): boolean {
  return char.toLowerCase() !== char.toUpperCase();
}

/** The words of `text`, lower-cased, up to MAX_SCANNED characters. */
function wordsOf(text: string): string[] {
  const words: string[] = [];
  let word = '';
  for (const char of text.slice(0, MAX_SCANNED)) {
    if (isLetter(char)) word += char.toLowerCase();
    else if (word) {
      words.push(word);
      word = '';
    }
  }
  if (word) words.push(word);
  return words;
}

/**
 * The language of `text` among `languages` (ISO 639-1, as the channel lists them); null when none of them is
 * recognisably more likely (too few common words, a tie, languages we have no words for).
 */
export function detectLanguage(text: string, languages: readonly string[]): string | null {
  const candidates = [...new Set(languages.map((language) => language.trim().toLowerCase()))].filter((language) =>
    WORD_SETS.has(language),
  );
  if (candidates.length === 0) return null;
  const words = wordsOf(text);
  let best: string | null = null;
  let bestScore = 0;
  let tie = false;
  for (const language of candidates) {
    const set = WORD_SETS.get(language)!;
    const score = words.reduce((sum, word) => sum + (set.has(word) ? 1 : 0), 0);
    if (score > bestScore) {
      best = language;
      bestScore = score;
      tie = false;
    } else if (score === bestScore && score > 0) tie = true;
  }
  return bestScore >= 2 && !tie ? best : null;
}
