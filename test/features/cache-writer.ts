/** Child process for the cache concurrency tests: writes `batches` batches of `per` keys tagged `tag`. */
import { FeatureCache, sha256 } from '../../src/features/cache.js';

const [dir, tag, batches, per, dim] = process.argv.slice(2) as [string, string, string, string, string];
const c = FeatureCache.open(dir);
for (let b = 0; b < Number(batches); b++) {
  const entries = [];
  for (let i = 0; i < Number(per); i++) {
    const n = b * Number(per) + i;
    const v = new Float32Array(Number(dim));
    for (let j = 0; j < v.length; j++) v[j] = Math.sin(n * 0.37 + j) * (1 + (tag.length % 3));
    entries.push({ key: sha256(`${tag}:${n}`), vector: v });
  }
  c.putMany(entries);
  if (process.send) process.send({ batch: b });
}
