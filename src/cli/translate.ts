/** `graft translate`: translate texts with an encoder-decoder model folder (greedy decoding). */
import { loadTranslator, translateTexts } from '../text/translate.js';
import { GraftError } from '../util/errors.js';
import { int } from './parse.js';

export async function translateCommand(texts: string[], o: { model: string; maxNewTokens?: string; json?: boolean }) {
  if (!texts.length) throw new GraftError('give at least one text to translate');
  texts.forEach((t, i) => {
    if (!t.trim()) throw new GraftError(`text ${i + 1} is empty`);
  });
  const t = await loadTranslator(o.model);
  try {
    const out = await translateTexts(t, texts, {
      ...(o.maxNewTokens !== undefined ? { maxNewTokens: int(o.maxNewTokens, '--max-new-tokens') } : {}),
      warn: (m) => process.stderr.write(m + '\n'),
    });
    if (o.json)
      process.stdout.write(
        JSON.stringify(
          texts.map((s, i) => ({ source: s, translation: out[i] })),
          null,
          2,
        ) + '\n',
      );
    else for (const s of out) process.stdout.write(s + '\n');
  } finally {
    await t.decoder.release();
  }
}
