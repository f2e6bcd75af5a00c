/**
 * Writes the committed fuzz corpus: every target's seeds (valid files made by targets.ts) into
 * test/fixtures/fuzz-corpus/<target>/<seed>/. Run after changing a seed:
 *   node --import tsx test/fuzz/make-corpus.ts
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { CORPUS_DIR, TARGETS, writeCase } from './targets.js';

rmSync(CORPUS_DIR, { recursive: true, force: true });
let total = 0;
for (const t of TARGETS) {
  for (const [name, files] of Object.entries(t.seeds())) {
    writeCase(join(CORPUS_DIR, t.name, name), files);
    const bytes = Object.values(files).reduce((s, b) => s + b.length, 0);
    total += bytes;
    console.log(`${t.name}/${name}: ${Object.keys(files).length} file(s), ${bytes} bytes`);
  }
}
console.log(`total ${total} bytes`);
