/**
 * The curated model catalog behind `graft models` and `--model NAME`: each entry names a hub
 * repository (Transformers.js ONNX layout) or a plain HTTPS file with its sha256 and size, and says
 * what the model is for, where it comes from, its licence, input size and preprocessing.
 * (Skeleton: the entries are filled in by the catalog work; the types are the contract the hub
 * client resolves against.)
 */

/** Where an entry's files come from. */
export type CatalogSource =
  /** A Hugging Face hub repository; `include` are the globs pulled when the entry is used as a model. */
  | { kind: 'hub'; repo: string; revision?: string; include: string[] }
  /** One plain HTTPS file, verified by its sha256 and size, stored in the same cache. */
  | { kind: 'url'; url: string; sha256: string; size: number; file: string };

export interface CatalogEntry {
  /** The name users type: `--model mobilenet-v2`. */
  name: string;
  kind: 'image' | 'text-encoder' | 'text-generation';
  /** What it is for, one line. */
  description: string;
  /** Who made it and where it was published. */
  origin: string;
  licence: string;
  source: CatalogSource;
  /** The files a use of the entry downloads, with sizes in bytes where known. */
  files: { path: string; size?: number }[];
  /** Image models: input size and preprocessing in words; text models: max tokens. */
  input: string;
  preprocessing: string;
}

export const CATALOG: readonly CatalogEntry[] = [];

export function findCatalogEntry(name: string): CatalogEntry | undefined {
  return CATALOG.find((e) => e.name === name);
}
