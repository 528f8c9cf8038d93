import { isFromPerson, type CustomerMessageFacts, type MailClassification, type SenderVerdictKind } from './conversation.js';

/**
 * What a customer's new mail asks of us, for the AI agent's conversation: a person instead of the AI agent,
 * or the confirmation that an answer solved the problem. Pure (no I/O, no clock): safe in workflow code too.
 *
 * Each language has a readable table of phrase patterns. A pattern is a small regular expression written as
 * people write (with umlauts and accents, lower case, single spaces between words) and matched on whole words
 * of the normalised mail: lower case, NFKC, punctuation and line breaks as single spaces, accents dropped, and
 * German umlauts written either way ("möchte", "moechte" and "mochte" all match "möchte").
 */

export const INTENT_LANGUAGES = ['en', 'de', 'fr', 'es', 'nl', 'it'] as const;
export type IntentLanguage = (typeof INTENT_LANGUAGES)[number];

interface IntentPhrases {
  /** The customer asks for a person instead of the AI agent. */
  asksForPerson: string[];
  /** The customer says the answer solved the problem. */
  resolved: string[];
  /** The customer says it did not: beats `resolved` in the same mail. */
  notResolved: string[];
}

// Building blocks, `(?:…)` groups so that a pattern can quantify them.
const W = '(?:\\S+ )'; // any one word and its space: `${W}{0,2}` skips up to two words

// English
const EN_PERSON =
  '(?:human(?: being)?|person|agent|representative|rep|operator|staff member|employee|manager|supervisor|' +
  'support (?:agent|person|staff|team member)|customer service (?:agent|rep|representative))';
const EN_REAL = '(?:real|actual|live|human|genuine|proper)';
// "not a problem", "don't worry" and "never mind" say nothing about the answer.
const EN_NOT =
  "(?:(?:not|never|no longer|didn'?t|doesn'?t|don'?t|isn'?t|wasn'?t|hasn'?t|haven'?t|won'?t|can'?t|cannot|couldn'?t)" +
  '(?! (?:a |an )?(?:problem|issue|worr\\S*|mind)))';
const EN_WORKS =
  '(?:help|helps|helped|helpful|work|works|worked|working|solve[sd]?|fix|fixe[sd]|resolve[sd]?|sort|sorted|answer|answered)';

// German
const DE_PERSON =
  '(?:mensch(?:en)?|person|mitarbeiter(?:in|innen)?|mitarbeitenden?|ansprechpartner(?:in)?|ansprechperson|' +
  '(?:kunden)?berater(?:in)?|sachbearbeiter(?:in)?|(?:service|kundendienst|support ?)mitarbeiter(?:in)?|kollegen|kollegin)';
const DE_REAL = '(?:echte[nmrs]?|richtige[nmrs]?|reale[nmrs]?|lebendige[nmrs]?|menschliche[nmrs]?|persönliche[nmrs]?)';
const DE_A = '(?:einem|einer|einen|eine|ein|nem|ner|ihrem|ihrer|ihren|einem ihrer|einer ihrer)';
const DE_NOUN_PHRASE = `(?:jemandem|jemand|(?:${DE_A} )?(?:${DE_REAL} )?${DE_PERSON}|(?:dem|der|den) zuständigen ${DE_PERSON})`;
const DE_TALK = '(?:sprechen|reden|telefonieren|chatten|schreiben|kommunizieren|verbunden|verbinden|in kontakt|kontakt)';
const DE_MACHINE = '(?:bot|chatbot|roboter|ki|maschine|computer|automaten|automatische[nr]? (?:antwort(?:en)?|system))';
const DE_WORKS =
  '(?:geholfen|weitergeholfen|hilfreich|hilft|funktioniert|funktionieren|funktioniert hat|klappt|geklappt|gelöst|behoben|erledigt|beantwortet|geklärt|läuft|geht)';

// French, Spanish, Dutch, Italian: the common ways to put it.
const FR_PERSON =
  '(?:humain|personne|conseill(?:er|ère)|agent|opérat(?:eur|rice)|employée?|interlocut(?:eur|rice)|technicien(?:ne)?)';
const ES_PERSON = '(?:humano|persona|agente|asesora?|operadora?|representante|emplead[oa]|ser humano)';
const NL_PERSON = '(?:mens|persoon|medewerker|medewerkster|werknemer|iemand|klantenservicemedewerker|adviseur)';
const IT_PERSON = '(?:umano|persona|operat(?:ore|rice)|agente|consulente|addett[oa]|impiegat[oa]|qualcuno|essere umano)';

const PHRASES: Record<IntentLanguage, IntentPhrases> = {
  en: {
    asksForPerson: [
      `(?:talk|speak|chat|communicate) (?:to|with) (?:someone|somebody|(?:(?:a|an|some|your|one of your) )?(?:${EN_REAL} )?${EN_PERSON})`,
      '(?:real|actual|live|genuine) (?:human|humans|person|people|agent|human being)',
      '(?:talk|speak|chat) (?:to|with) (?:your |the )?(?:customer service|customer support|support team)',
      '(?:please|can|could|would) (?:you |someone |somebody )?(?:\\S+ ){0,3}(?:call|phone|ring) me|call me back|give me a call',
      'human (?:agent|support|assistance|help|operator|representative|contact|response|reply)',
      `(?:connect|transfer|put|forward|pass|route|escalate|hand) (?:(?:me|this|it|my (?:request|case|ticket|question)) )?(?:over |through )?(?:to|with) (?:(?:a|an|your) )?(?:${EN_REAL} )?${EN_PERSON}`,
      `(?:want|need|like|prefer|request|get me|give me|ask for|asking for) (?:a|an) (?:(?:${EN_REAL} )?(?:human|agent|representative|operator|human being)|${EN_REAL} person)`,
      '(?:want|need|like) (?:a|an) person to (?:talk|speak|answer|reply|respond|help|look)',
      "(?:don'?t|do not|no more|stop) (?:want )?(?:(?:to )?(?:talk|speak|chat)(?:ing)? (?:to|with) )?(?:a |an |the |this |your |any )?(?:bot|robot|chatbot|machine|ai|automated (?:answer|reply|response|system|message))s?",
      '(?:human|real person|representative|operator|human being) (?:please|pls)',
      'is (?:there|this) (?:a|an|any) (?:real )?(?:human|humans|real person|actual person|real people)',
      '^(?:a |an )?(?:human|person|agent|representative|operator|real person)(?: please| pls)?$',
    ],
    resolved: [
      `(?:that|this|it|which|you|your (?:answer|reply|response|mail|email|message|article|tip|suggestion)|the (?:article|link|answer|tip|suggestion)) (?:has |have |really |totally |definitely |actually |indeed |certainly )*(?:helped|did help)`,
      '(?:was|is|has been) (?:very |really |super |extremely |most |quite )?(?:helpful|useful)',
      '(?:solved|fixed|resolved|sorted|answered|cleared up) (?:it|that|this|the (?:problem|issue)|my (?:problem|issue|question|query)|everything)',
      '(?:did|does) the trick',
      '(?:problem|issue|question|query|matter|error) (?:is |has been |was |got |seems |appears )?(?:now |finally |all |been )*(?:solved|resolved|fixed|sorted(?: out)?|answered|gone|cleared up)',
      `(?:works|working) ${W}{0,2}(?:now|again)`,
      '(?:now|finally) (?:it |everything |all |that )?(?:works|working|worked)',
      '(?:that|this|it) worked',
      "(?:all|everything(?: is)?|we'?re|we are|i'?m|i am) (?:good|fine|sorted|set|ok|okay) now",
      "(?:all sorted|(?:i'?m|i am|we'?re|we are) all set)",
      '(?:you can|you may|feel free to|please|go ahead and) close (?:this|the|my) (?:ticket|case|request|conversation|issue|thread)',
      '(?:ticket|case|request|conversation|issue) can be closed',
      'got it (?:working|to work|fixed|sorted)',
      'managed to (?:fix|solve|sort)',
      "that(?:'?s| is| was) (?:exactly )?what i (?:needed|was looking for)",
    ],
    notResolved: [
      `${EN_NOT}(?: \\S+){0,2} ${EN_WORKS}`,
      '(?:unhelpful|useless|no luck|no change|no difference|nothing (?:has )?changed|not anymore|stopped working)',
      "still (?:broken|failing|fails|the same|get|getting|see|seeing|have|having|happens|happening|no|not|can'?t|cannot|unable|doesn'?t|don'?t|isn'?t|won'?t)",
      '(?:same|similar) (?:problem|issue|error) (?:again|still|persists|remains|as before)',
      '(?:problem|issue|error) (?:persists|remains|is still)',
      '(?:broken|failing|fails|crashing|wrong|down) again',
      '(?:another|a new|a different|one more) (?:problem|issue|error)',
    ],
  },
  de: {
    asksForPerson: [
      `mit ${DE_NOUN_PHRASE}(?: \\S+){0,3} ${DE_TALK}`,
      `(?:sprechen|reden|verbinden sie mich|verbindet mich|verbinde mich|verbinden|weiterleiten|durchstellen)(?: \\S+){0,3} (?:mit|an|zu) ${DE_NOUN_PHRASE}`,
      `an ${DE_NOUN_PHRASE}(?: \\S+){0,2} (?:weiterleiten|weitergeben|übergeben|eskalieren|durchstellen|weiter)`,
      '(?:echte[nmrs]?|richtige[nmrs]?|reale[nmrs]?|lebendige[nmrs]?) (?:person|mensch(?:en)?|mitarbeiter(?:in)?|ansprechpartner(?:in)?)',
      '(?:menschliche[nmrs]?) (?:ansprechpartner(?:in)?|ansprechperson|mitarbeiter(?:in)?|kontakt|unterstützung|hilfe|beratung|antwort|support|berater(?:in)?)',
      'persönliche[nmrs]? (?:ansprechpartner(?:in)?|ansprechperson|beratung|kontakt)',
      `(?:bitte|möchte|möchten|will|wollen|hätte gerne?|brauche|benötige|wünsche|verlange)(?: \\S+){0,2} (?:einen|eine|einem|einer|ein) (?:${DE_REAL} )?(?:mensch(?:en)?|mitarbeiter(?:in)?|ansprechpartner(?:in)?|ansprechperson|sachbearbeiter(?:in)?|(?:kunden)?berater(?:in)?)`,
      'sachbearbeiter(?:in)?',
      `(?:will|möchte|möchten|wollen)(?: \\S+){0,3} (?:kein(?:e[nmr]?)?|nicht mit (?:einem|einer|dem|der|diesem|dieser)) ${DE_MACHINE}`,
      `kein(?:e[nmr]?)? ${DE_MACHINE} (?:bitte|mehr)`,
      '^(?:einen |ein )?(?:mensch(?:en)?|mitarbeiter(?:in)?)(?: bitte)?$',
      'ist (?:da|dort|hier) (?:\\S+ )?(?:ein|eine|jemand) (?:echter |echte )?(?:mensch|person|mitarbeiter(?:in)?)',
      'rufen sie mich (?:\\S+ ){0,3}an|(?:bitte um|um einen|einen) rückruf',
    ],
    resolved: [
      '(?:hat|haben|hatte) (?:\\S+ ){0,3}(?:weiter)?geholfen',
      '(?:war|ist|waren|sind) (?:\\S+ ){0,2}(?:hilfreich|nützlich)',
      'hilft (?:mir |uns )?(?:sehr |wirklich |echt )?weiter',
      '(?:problem|frage|anliegen|fehler|sache|thema|angelegenheit) (?:\\S+ ){0,3}(?:gelöst|erledigt|behoben|geklärt|beantwortet)',
      '(?:funktioniert|klappt|läuft) (?:\\S+ ){0,2}(?:jetzt|nun|wieder|endlich)',
      '(?:jetzt|nun|endlich) (?:funktioniert|klappt|läuft|geht)',
      "(?:geht|gehts|geht's) (?:es )?(?:jetzt |nun )?wieder",
      'hat (?:\\S+ ){0,2}(?:geklappt|funktioniert)',
      '(?:hat sich|ist) (?:\\S+ ){0,2}erledigt',
      'kann (?:\\S+ ){0,2}geschlossen werden',
      '(?:können|dürfen) (?:\\S+ ){0,3}schließen',
      'alles klar (?:vielen |herzlichen |besten )?dank(?:e|eschön)?',
    ],
    notResolved: [
      // "kein Problem" says nothing about the answer.
      `(?:nicht|kein(?:e[nmrs]?)?(?! problem)|nie|niemals|nichts)(?: \\S+){0,2} ${DE_WORKS}`,
      '(?:funktioniert|klappt|geht|läuft|hilft)(?: \\S+){0,2} (?:nicht|kein(?:e[nmrs]?)?|nie)',
      '(?:immer noch|noch immer|weiterhin|nach wie vor|leider)(?: \\S+)? (?:nicht|kein(?:e[nmrs]?)?|der gleiche|die gleiche|das gleiche|dasselbe|derselbe|dieselbe)',
      '(?:besteht|bestehen|bleibt) (?:\\S+ ){0,2}(?:weiterhin|noch|immer noch|nach wie vor|bestehen)',
      '(?:gleiche|selbe|dasselbe|derselbe) (?:problem|fehler|fehlermeldung)',
      '(?:unbrauchbar|bringt (?:mir |uns )?nichts)',
      '(?:ein|einem) (?:anderes|anderen|neues|neuen|weiteres|weiteren) (?:problem|fehler)',
    ],
  },
  fr: {
    asksForPerson: [
      `(?:parler|discuter|échanger|être mise? en relation|mettre en relation|me mettre en relation|mettez moi en relation|joindre|contacter) (?:à |a |avec )?(?:quelqu'un|(?:un |une )?(?:vrai |vraie |véritable )?${FR_PERSON})`,
      '(?:vrai|vraie|véritable) (?:humain|personne|conseill(?:er|ère)|agent|interlocut(?:eur|rice))',
      '(?:personne|conseill(?:er|ère)|agent|interlocut(?:eur|rice)) (?:réelle?|humaine?|en chair et en os)',
      'être humain',
      '(?:pas de|plus de|ne veux pas (?:parler )?(?:à|avec) (?:un|une)) (?:robot|bot|chatbot|machine|ia)',
    ],
    resolved: [
      "m'a (?:bien |beaucoup |vraiment |énormément )?aidée?",
      '(?:ça|ca|cela) (?:a )?(?:marché|fonctionné)',
      '(?:ça|ca|cela|tout) (?:marche|fonctionne) (?:\\S+ )?(?:maintenant|à nouveau|de nouveau|enfin)',
      '(?:problème|souci|question|demande) (?:\\S+ ){0,2}(?:résolue?|réglée?)',
      "c'est (?:\\S+ )?(?:réglé|résolu)",
      '(?:était|est) (?:\\S+ )?utile',
    ],
    notResolved: [
      "(?:ne (?:\\S+ )?(?:marche|fonctionne|m'a|nous a|résout|règle|sert)|n'(?:a|ont|ai|est|était)(?: \\S+)?) (?:toujours )?(?:pas|plus|rien|jamais)",
      '(?:toujours pas|pas (?:\\S+ )?(?:résolue?|réglée?|aidée?|utile|marché|fonctionné))',
      '(?:rien|aucun) (?:\\S+ )?(?:changé|résolu|aidé|marché)',
      '(?:toujours|encore) (?:le même|la même|bloquée?|en panne)',
    ],
  },
  es: {
    asksForPerson: [
      `(?:hablar|comunicarme|conversar|chatear|contactar) (?:con|a) (?:alguien|(?:un |una )?${ES_PERSON})`,
      '(?:persona|agente|humano|asesor) (?:real|de verdad|humano)',
      'ser humano',
      `(?:pásame|páseme|comuníqueme|comunícame|transfiérame|transfiéreme|conécteme|conéctame) (?:con|a) (?:un |una )?${ES_PERSON}`,
      '(?:quiero|necesito|prefiero|quisiera|me gustaría) (?:hablar con )?(?:un|una) (?:persona|humano|agente|asesora?|operadora?)',
      'no (?:quiero )?(?:hablar con )?(?:un |una )?(?:robot|bot|máquina|ia)',
    ],
    resolved: [
      '(?:me|nos) (?:ha |han )?(?:\\S+ )?(?:ayudado|ayudó|sirvió|servido)',
      '(?:eso|esto|su respuesta|la respuesta|el artículo) (?:me )?(?:ayudó|sirvió|funcionó|solucionó|resolvió)',
      '(?:ya|ahora) (?:\\S+ )?funciona',
      'funciona (?:\\S+ )?(?:ahora|de nuevo|otra vez)',
      '(?:problema|duda|pregunta|consulta) (?:\\S+ ){0,2}(?:resuelt[oa]|solucionad[oa]|arreglad[oa])',
      '(?:fue|ha sido|es) (?:\\S+ )?útil',
    ],
    notResolved: [
      'no(?: \\S+){0,2} (?:ayud\\S*|sirv\\S*|funcion\\S*|resuel\\S*|resolv\\S*|soluc\\S*|arregl\\S*|útil)',
      '(?:sigue sin|todavía no|aún no|sigue no|nada (?:ha )?cambiado)',
      '(?:el )?mismo (?:problema|error)',
    ],
  },
  nl: {
    asksForPerson: [
      `(?:spreken|praten|chatten|bellen) met (?:een )?(?:echte |echt )?${NL_PERSON}`,
      `met (?:een )?(?:echte |echt )?${NL_PERSON}(?: \\S+){0,2} (?:spreken|praten|chatten|bellen|in contact)`,
      '(?:echte|echt) (?:mens|persoon|medewerker)',
      'menselijke (?:medewerker|hulp|ondersteuning|agent|contactpersoon)',
      `(?:verbind|verbindt|doorverbinden|doorsturen)(?: \\S+){0,2} (?:met|naar) (?:een )?${NL_PERSON}`,
      '(?:wil|graag) geen (?:bot|robot|chatbot|ai|computer)',
    ],
    resolved: [
      '(?:heeft|hebt|heb) (?:\\S+ ){0,2}geholpen',
      '(?:dat|dit|het) hielp',
      '(?:werkt|werken) (?:\\S+ ){0,2}(?:nu|weer)',
      '(?:nu|eindelijk) werkt',
      '(?:probleem|vraag|kwestie) (?:\\S+ ){0,2}(?:opgelost|beantwoord|verholpen)',
      '(?:was|is) (?:\\S+ )?(?:nuttig|behulpzaam)',
    ],
    notResolved: [
      '(?:niet|geen|nooit)(?: \\S+){0,2} (?:geholpen|opgelost|verholpen|nuttig|werkt|werken|gewerkt|beantwoord)',
      '(?:werkt|helpt|hielp)(?: \\S+){0,2} niet',
      '(?:nog steeds|nog altijd)',
    ],
  },
  it: {
    asksForPerson: [
      `(?:parlare|comunicare|chattare|essere messo in contatto|mettermi in contatto|mettetemi in contatto) (?:con|a) (?:qualcuno|(?:un |una |un vero |una vera )?(?:vero |vera )?${IT_PERSON})`,
      '(?:persona|operatore|agente) (?:vera|reale|umano|in carne e ossa)',
      '(?:vero|vera) (?:persona|operatore|umano)',
      '(?:essere umano|operatore umano)',
      '(?:voglio|vorrei|preferisco|ho bisogno di) (?:parlare con )?(?:un|una) (?:operatore|operatrice|persona|umano|agente)',
      'non (?:voglio )?(?:parlare con )?(?:un |una )?(?:robot|bot|macchina|ia)',
    ],
    resolved: [
      '(?:mi|ci) (?:ha |hanno )?(?:\\S+ )?(?:aiutato|aiutata|servito)',
      '(?:ora|adesso|finalmente) (?:\\S+ )?funziona',
      'funziona (?:\\S+ )?(?:ora|adesso|di nuovo)',
      'ha funzionato',
      '(?:problema|questione|domanda) (?:\\S+ ){0,2}(?:risolt[oa]|sistemat[oa])',
      '(?:è stato|è stata|era) (?:\\S+ )?utile',
    ],
    notResolved: [
      'non(?: \\S+){0,2} (?:aiutat\\S*|funzion\\S*|risolt\\S*|sistemat\\S*|utile|servit\\S*)',
      'ancora (?:non|niente|nulla)',
      '(?:stesso|stessa) (?:problema|errore)',
    ],
  },
};

/** True when the customer asks to deal with a person rather than the AI agent, in one of `languages`. */
export function asksForPerson(text: string, languages: readonly string[]): boolean {
  const normalised = normaliseIntentText(text);
  return tablesFor(languages).some((table) => table.asksForPerson.some((pattern) => pattern.test(normalised)));
}

/**
 * True when the customer confirms that the answer solved the problem, in one of `languages`; false when the same
 * mail says something did not work or help, or asks a further question.
 */
export function confirmsResolution(text: string, languages: readonly string[]): boolean {
  if (asksQuestion(text)) return false;
  const normalised = normaliseIntentText(text);
  const tables = tablesFor(languages);
  if (tables.some((table) => table.notResolved.some((pattern) => pattern.test(normalised)))) return false;
  return tables.some((table) => table.resolved.some((pattern) => pattern.test(normalised)));
}

/**
 * What a mail means for its conversation: what it is, and, when a person wrote it, whether it asks for a
 * person or confirms the answer. Ingest computes it once and hands it to the workflow with the mail.
 */
export function customerMessageFacts(
  mail: { classification: MailClassification; senderVerdict: SenderVerdictKind; text: string },
  languages: readonly string[],
): Omit<CustomerMessageFacts, 'inboundMessageId'> {
  const fromPerson = isFromPerson(mail);
  return {
    classification: mail.classification,
    senderVerdict: mail.senderVerdict,
    asksForPerson: fromPerson && asksForPerson(mail.text, languages),
    confirmsResolution: fromPerson && confirmsResolution(mail.text, languages),
  };
}

const WORD_CHARACTER = /^[\p{L}\p{N}]$/u;

/** Lower case, NFKC, umlauts as ae/oe/ue and ß as ss, no accents, words separated by single spaces. */
export function normaliseIntentText(text: string): string {
  return (
    foldLetters(text)
      .replace(/[^\p{L}\p{N}']+/gu, ' ')
      // Quotation marks, not apostrophes: only a single ' between two letters or digits stays.
      .replace(/'+/g, (run: string, at: number, text: string) =>
        run.length === 1 && WORD_CHARACTER.test(text[at - 1] ?? '') && WORD_CHARACTER.test(text[at + 1] ?? '') ? run : ' ',
      )
      .replace(/\s+/g, ' ')
      .trim()
  );
}

function foldLetters(text: string): string {
  return text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[’‘‛ʼ`´]/g, "'")
    .replace(/ä/g, 'ae')
    .replace(/ö/g, 'oe')
    .replace(/ü/g, 'ue')
    .replace(/ß/g, 'ss')
    .normalize('NFD')
    .replace(/\p{M}/gu, '');
}

// A question mark in a link (`?id=…`) is not a question.
const LINK = /\b(?:https?:\/\/|www\.)\S+/gi;

function asksQuestion(text: string): boolean {
  return /[?¿]/.test(text.normalize('NFKC').replace(LINK, ' '));
}

interface CompiledPhrases {
  asksForPerson: RegExp[];
  resolved: RegExp[];
  notResolved: RegExp[];
}

const COMPILED = new Map<string, CompiledPhrases>(
  INTENT_LANGUAGES.map((language) => {
    const table = PHRASES[language];
    return [
      language,
      {
        asksForPerson: table.asksForPerson.map(compilePattern),
        resolved: table.resolved.map(compilePattern),
        notResolved: table.notResolved.map(compilePattern),
      },
    ];
  }),
);

/** Declared languages ('de', 'DE', 'de-AT' all mean German) that have tables; others are ignored. */
function tablesFor(languages: readonly string[]): CompiledPhrases[] {
  const tables = new Set<CompiledPhrases>();
  for (const language of languages) {
    const table = COMPILED.get(language.trim().toLowerCase().split(/[-_]/)[0] ?? '');
    if (table) tables.add(table);
  }
  return [...tables];
}

/**
 * A phrase pattern (written in lower case: it is not lower-cased, `\S` would become `\s`) as a regular expression over
 * normalised text: whole words only, umlauts match both spellings (ö → `(?:oe|o)`), ß matches ss or s, accents are
 * dropped as in the text.
 */
function compilePattern(pattern: string): RegExp {
  let source = '';
  for (const char of pattern.normalize('NFKC')) {
    if (char === 'ä') source += '(?:ae|a)';
    else if (char === 'ö') source += '(?:oe|o)';
    else if (char === 'ü') source += '(?:ue|u)';
    else if (char === 'ß') source += '(?:ss|s)';
    else if (char === '’') source += "'";
    else source += char.normalize('NFD').replace(/\p{M}/gu, '');
  }
  return new RegExp(`(?<![\\p{L}\\p{N}'])(?:${source})(?![\\p{L}\\p{N}'])`, 'u');
}
