import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  asksForPerson,
  confirmsResolution,
  INTENT_LANGUAGES,
  normaliseIntentText,
  type IntentLanguage,
} from '../../src/domain/customer-intent.js';

interface Examples {
  yes: string[];
  no: string[];
}

const ASKS_FOR_PERSON: Record<IntentLanguage, Examples> = {
  en: {
    yes: [
      'Can I talk to a human?',
      'I want a real person.',
      'Please connect me with an agent.',
      'Put me through to a human, please',
      'Could I speak with a representative about this?',
      'I need to speak to someone.',
      "I don't want to talk to a bot!",
      'Is there a real person reading this?',
      'Please escalate this to a manager.',
      'Human please',
      'Agent',
      'I’d like a live agent',
      'CAN I SPEAK TO A HUMAN BEING',
      'Can someone from support call me back?',
    ],
    no: [
      'The person I ordered for has not received the parcel.',
      'Please send the human resources department invoice to accounting.',
      'My travel agent booked the tickets.',
      'I spoke to an agent yesterday, who said it ships on Monday.',
      "I need a person's signature on the delivery note.",
      'Where is my order?',
      'Thanks, that solved it!',
    ],
  },
  de: {
    yes: [
      'Ich möchte mit einem Menschen sprechen.',
      'Ich moechte mit einem Menschen sprechen.',
      'Ich mochte mit einem Menschen sprechen',
      'Bitte einen Mitarbeiter!',
      'Ich will eine echte Person.',
      'Gibt es einen Sachbearbeiter für mein Anliegen?',
      'Verbinden Sie mich bitte mit einem Mitarbeiter.',
      'Kann ich mit jemandem sprechen?',
      'Ich hätte gern einen menschlichen Ansprechpartner.',
      'Ich will keinen Bot, sondern eine Antwort von Ihnen.',
      'Kann ich bitte mit dem zuständigen Kundenberater telefonieren?',
      'Mitarbeiter bitte',
      'Bitte rufen Sie mich morgen an.',
      'Ist da überhaupt ein Mensch?',
    ],
    no: [
      'Ich habe schon mit einem Mitarbeiter telefoniert.',
      'Die Person, für die ich bestellt habe, ist nicht zu Hause.',
      'Ich möchte eine Person zur Bestellung hinzufügen.',
      'Bitte senden Sie die Rechnung an unsere Personalabteilung.',
      'Ich bin kein Roboter.',
      'Wo ist mein Paket?',
    ],
  },
  fr: {
    yes: ['Je veux parler à un humain.', 'Je voudrais parler à une vraie personne', 'Mettez-moi en relation avec un conseiller.'],
    no: ['La personne pour qui j’ai commandé est absente.', 'Où est mon colis ?'],
  },
  es: {
    yes: ['Quiero hablar con una persona.', 'Necesito hablar con un agente humano', '¿Puedo hablar con alguien?'],
    no: ['La persona para quien compré no lo recibió.', '¿Dónde está mi pedido?'],
  },
  nl: {
    yes: ['Ik wil met een medewerker spreken.', 'Graag een echte persoon', 'Kan ik met een mens praten?'],
    no: ['De persoon voor wie ik bestelde is niet thuis.', 'Waar is mijn pakket?'],
  },
  it: {
    yes: ['Vorrei parlare con un operatore.', 'Voglio una persona vera', 'Posso parlare con un essere umano?'],
    no: ['La persona per cui ho ordinato non era a casa.', 'Dov’è il mio pacco?'],
  },
};

const CONFIRMS_RESOLUTION: Record<IntentLanguage, Examples> = {
  en: {
    yes: [
      'Thanks, that solved it!',
      'That helped, thank you.',
      'Problem solved.',
      'Works now, thanks!',
      "It's working again. Cheers",
      'Great, that did the trick.',
      'Thank you, that answered my question.',
      'You can close this ticket.',
      'That was very helpful, thanks!',
      'Not a problem at all, it works now.',
      "Don't worry, everything works now.",
      'Problem solved, no other questions. Have a nice day!',
    ],
    no: [
      "That didn't help.",
      'Not helpful.',
      'Still not working.',
      'Thanks, but that did not help at all.',
      'Thanks, that helped! But how do I change my address?',
      'Thanks, that solved it. Can I also change the delivery date?',
      'I tried it and the problem persists.',
      'I followed the steps but it still does not work.',
      'It worked yesterday, but now it is broken again.',
      'Thanks, that solved it. Now I have another problem with my invoice.',
      'Thanks for your reply.',
      'Thank you',
      'Can I talk to a human?',
    ],
  },
  de: {
    yes: [
      'Danke, das hat geholfen!',
      'Das hat mir sehr geholfen, vielen Dank.',
      'Problem gelöst.',
      'Problem geloest, danke',
      'Funktioniert jetzt, danke!',
      'Jetzt geht es wieder.',
      'Hat geklappt, vielen Dank!',
      'Kein Problem, jetzt funktioniert alles.',
      'Das Ticket kann geschlossen werden.',
      'Alles klar, danke!',
    ],
    no: [
      'Das hat nicht geholfen.',
      'Hat leider nicht geholfen.',
      'Funktioniert immer noch nicht.',
      'Danke, aber es klappt leider nicht.',
      'Das Problem besteht weiterhin.',
      'Hat funktioniert, aber jetzt habe ich ein anderes Problem mit der Rechnung.',
      'Danke, das hat geholfen. Wie ändere ich meine Adresse?',
      'Vielen Dank für Ihre Antwort.',
    ],
  },
  fr: {
    yes: ['Merci, ça marche maintenant !', 'Problème résolu, merci.', 'Ça m’a beaucoup aidé.'],
    no: ['Ça ne marche toujours pas.', 'Ça ne m’a pas aidé.', 'Merci, mais comment changer mon adresse ?'],
  },
  es: {
    yes: ['Gracias, eso me ayudó.', 'Ya funciona, gracias.', 'Problema resuelto.'],
    no: ['No me ayudó.', 'Sigue sin funcionar.', 'Gracias, ¿y cómo cambio mi dirección?'],
  },
  nl: {
    yes: ['Bedankt, dat heeft geholpen.', 'Het werkt nu, dank je!', 'Probleem opgelost.'],
    no: ['Dat heeft niet geholpen.', 'Het werkt nog steeds niet.', 'Bedankt, maar hoe wijzig ik mijn adres?'],
  },
  it: {
    yes: ['Grazie, mi ha aiutato molto.', 'Ora funziona, grazie!', 'Problema risolto.'],
    no: ['Non mi ha aiutato.', 'Non funziona ancora.', 'Grazie, ma come cambio il mio indirizzo?'],
  },
};

describe.each(INTENT_LANGUAGES)('asksForPerson in %s', (language) => {
  const { yes, no } = ASKS_FOR_PERSON[language];
  it.each(yes)('hears a request for a person: %s', (text) => {
    expect(asksForPerson(text, [language])).toBe(true);
  });
  it.each(no)('hears none: %s', (text) => {
    expect(asksForPerson(text, [language])).toBe(false);
  });
});

describe.each(INTENT_LANGUAGES)('confirmsResolution in %s', (language) => {
  const { yes, no } = CONFIRMS_RESOLUTION[language];
  it.each(yes)('hears a confirmation: %s', (text) => {
    expect(confirmsResolution(text, [language])).toBe(true);
  });
  it.each(no)('hears none: %s', (text) => {
    expect(confirmsResolution(text, [language])).toBe(false);
  });
});

describe('languages', () => {
  it('matches only the languages the channel declares', () => {
    expect(asksForPerson('Ich möchte mit einem Menschen sprechen', ['en'])).toBe(false);
    expect(confirmsResolution('Danke, das hat geholfen', ['en'])).toBe(false);
    expect(asksForPerson('Ich möchte mit einem Menschen sprechen', ['en', 'de'])).toBe(true);
    expect(confirmsResolution('Danke, das hat geholfen', ['fr', 'de'])).toBe(true);
  });

  it('reads region subtags and any case, and ignores languages it has no phrases for', () => {
    expect(asksForPerson('Ich möchte mit einem Menschen sprechen', ['de-AT'])).toBe(true);
    expect(asksForPerson('Can I talk to a human?', ['EN'])).toBe(true);
    expect(asksForPerson('Can I talk to a human?', ['xx', ''])).toBe(false);
    expect(confirmsResolution('Thanks, that solved it', [])).toBe(false);
  });

  it('lets a "did not help" in any declared language win over a confirmation in another', () => {
    expect(confirmsResolution('Thanks, that solved it. Das andere Problem besteht weiterhin.', ['en', 'de'])).toBe(false);
  });
});

describe('normalisation', () => {
  it('folds case, width, umlauts, accents, apostrophes and whitespace', () => {
    expect(normaliseIntentText('  Ich MÖCHTE\n\n mit   einem  Menschen — sprechen!! ')).toBe(
      'ich moechte mit einem menschen sprechen',
    );
    expect(normaliseIntentText('Problème résolu, ＴＨＡＮＫＳ')).toBe('probleme resolu thanks');
    expect(normaliseIntentText('That didn’t help. "Really"')).toBe("that didn't help really");
    expect(normaliseIntentText('Straße')).toBe('strasse');
  });

  it('ignores a question mark inside a link', () => {
    expect(confirmsResolution('Thanks, that solved it! I used https://shop.example/reset?token=abc', ['en'])).toBe(true);
  });

  it('never throws and answers a boolean for any text', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'grapheme', maxLength: 300 }),
        fc.subarray([...INTENT_LANGUAGES, 'xx']),
        (text, languages) => {
          expect(typeof asksForPerson(text, languages)).toBe('boolean');
          expect(typeof confirmsResolution(text, languages)).toBe('boolean');
        },
      ),
    );
  });

  it('never confirms a mail that asks a question', () => {
    fc.assert(
      fc.property(fc.constantFrom(...CONFIRMS_RESOLUTION.en.yes, ...CONFIRMS_RESOLUTION.de.yes), fc.string(), (text, more) => {
        expect(confirmsResolution(`${text} ${more}?`, INTENT_LANGUAGES)).toBe(false);
      }),
    );
  });
});
