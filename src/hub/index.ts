/**
 * `graft/hub`: The model hub: downloads into the shared Hugging Face cache, hf:/catalog model references, and the curated catalog.
 */
export { pull, pullUrl, cachedSnapshot, type PullOptions, type PullResult, type UrlFile } from './pull.js';
export { resolveModelRef, parseHfRef, pullCatalogEntry, type ResolveOptions } from './resolve.js';
export { hubCacheDir, hubEndpoint, hubOffline, repoCacheDir } from './cache.js';
export { MODEL_FILES } from './glob.js';
export { CATALOG, findCatalogEntry, catalogNames, type CatalogEntry, type CatalogSource } from './catalog.js';
