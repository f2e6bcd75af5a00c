/**
 * `graft pull ID`: download a model into the shared Hugging Face cache; and the one place where the
 * command line turns `hf:ORG/NAME[@REV]` and catalog names given as models into local paths.
 */
import type { Command } from 'commander';
import { GraftError } from '../util/errors.js';
import { findCatalogEntry } from '../hub/catalog.js';
import { pull, type PullResult } from '../hub/pull.js';
import { isHubModelRef, parseHfRef, pullCatalogEntry, resolveModelRef } from '../hub/resolve.js';
import { formatBytes, progressBar } from '../hub/progress.js';

export async function pullCommand(id: string, o: { revision?: string; include?: string[]; json?: boolean }) {
  const bar = progressBar(o.json);
  const common = { ...(o.include?.length ? { include: o.include } : {}), ...(bar ? { onProgress: bar.listener } : {}) };
  let r: PullResult;
  let ref: string;
  try {
    const entry = id.startsWith('hf:') ? undefined : findCatalogEntry(id);
    if (entry) {
      r = await pullCatalogEntry(entry, { ...common, ...(o.revision ? { revision: o.revision } : {}) });
      ref = id;
    } else {
      const hf = parseHfRef(id) ?? { repo: id };
      if (!/^[^/\s]+\/[^/\s]+$/.test(hf.repo))
        throw new GraftError(
          `'${id}' is neither a catalog name nor a hub id`,
          'give ORG/NAME or hf:ORG/NAME[@REV] (a hub model), or a name listed by graft models',
        );
      if (hf.revision && o.revision && hf.revision !== o.revision)
        throw new GraftError(`two revisions given: @${hf.revision} and --revision ${o.revision}`);
      const revision = o.revision ?? hf.revision;
      r = await pull(hf.repo, { ...common, ...(revision ? { revision } : {}) });
      ref = `hf:${hf.repo}${revision ? `@${revision}` : ''}`;
    }
  } finally {
    bar?.stop();
  }
  if (o.json) {
    process.stdout.write(JSON.stringify({ ...r, ref }, null, 2) + '\n');
    return;
  }
  const w = Math.max(...r.files.map((f) => f.path.length));
  process.stdout.write(
    `${r.repo} @ ${r.revision}${r.commit !== r.revision ? ` (commit ${r.commit.slice(0, 12)})` : ''}\n`,
  );
  for (const f of r.files)
    process.stdout.write(`  ${f.path.padEnd(w)}  ${f.size === undefined ? '' : formatBytes(f.size).padStart(10)}\n`);
  process.stdout.write(
    `${r.fetched ? `downloaded ${formatBytes(r.fetched)}` : 'everything was already in the cache'}; ${r.path}\n`,
  );
  process.stdout.write(`use it as: --model ${ref}\n`);
}

/** Options and arguments that name a model, rewritten by resolveCommandModels. */
const MODEL_OPTIONS = ['model', 'encoder', 'decoder'];
const modelArgument = (command: string, arg: string) => arg === 'model' || (command === 'convert' && arg === 'input');

/**
 * A preAction hook: every model option (--model, --encoder, --decoder) and `<model>` argument
 * (convert's `<input>`) whose value is `hf:…` or a catalog name (and not an existing path) becomes its
 * cached snapshot path, downloading what is missing (progress on stderr, quiet with --json).
 */
export async function resolveCommandModels(_program: Command, cmd: Command): Promise<void> {
  const opts = cmd.opts() as Record<string, unknown>;
  const bar = () => progressBar(Boolean(opts['json']));
  const resolve = async (v: string) => {
    const b = bar();
    try {
      return await resolveModelRef(v, b ? { onProgress: b.listener } : {});
    } finally {
      b?.stop();
    }
  };
  for (const name of MODEL_OPTIONS) {
    const v = opts[name];
    if (typeof v === 'string' && isHubModelRef(v)) cmd.setOptionValue(name, await resolve(v));
  }
  for (const [i, a] of cmd.registeredArguments.entries()) {
    const v = cmd.processedArgs[i];
    if (modelArgument(cmd.name(), a.name()) && typeof v === 'string' && isHubModelRef(v))
      cmd.processedArgs[i] = await resolve(v);
  }
}
