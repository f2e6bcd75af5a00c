/**
 * The hub client's errors in words a user can act on: 401/403 (the token: HF_TOKEN), 404 (which of
 * repository, revision or file is missing), and no network (could not reach HF_ENDPOINT; HF_HUB_OFFLINE=1
 * uses the cache). Every error the hub client throws to a user is a GraftError built here.
 */
import { GraftError } from '../util/errors.js';

/** What a request was about, for the message. */
export interface HubTarget {
  endpoint: string;
  repo: string;
  revision?: string;
  path?: string;
  /** A plain download host, not the hub (catalog URL entries). */
  notHub?: boolean;
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EPIPE',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_SOCKET',
]);

/** The network-level code of a failed fetch (ECONNREFUSED, ENOTFOUND, …, or TIMEOUT), if it is one. */
export function networkCode(e: unknown): string | undefined {
  const err = e as {
    name?: string;
    code?: string;
    cause?: { code?: string; name?: string; errors?: { code?: string }[] };
  };
  if (err?.name === 'TimeoutError' || err?.cause?.name === 'TimeoutError') return 'TIMEOUT';
  const code = err?.cause?.code ?? err?.code ?? err?.cause?.errors?.[0]?.code;
  if (code && NETWORK_CODES.has(code)) return code;
  if (err?.name === 'TypeError' && /fetch failed/.test(String((e as Error).message))) return code ?? 'fetch failed';
  return undefined;
}

export function unreachable(endpoint: string, code: string, notHub = false): GraftError {
  return new GraftError(
    `could not reach ${notHub ? '' : 'the Hugging Face hub at '}${endpoint}${notHub ? '' : ' (HF_ENDPOINT)'} (${code === 'TIMEOUT' ? 'timed out' : code})`,
    `check the network connection${notHub ? '' : ' and HF_ENDPOINT'}; if the model is already in the cache, set HF_HUB_OFFLINE=1 to use it without the network`,
  );
}

/** A GraftError for an HTTP error status from the hub (X-Error-Code, when sent, says what was not found). */
export function httpError(status: number, errorCode: string | null | undefined, t: HubTarget): GraftError {
  const rev = t.revision ?? 'main';
  if (status === 401)
    return new GraftError(
      `the hub refused ${t.repo} without valid credentials (401): the repository is private or gated, or does not exist`,
      process.env['HF_TOKEN']
        ? 'HF_TOKEN is set but was not accepted: check that it is a valid token (https://huggingface.co/settings/tokens)'
        : 'set HF_TOKEN to an access token that can read it (https://huggingface.co/settings/tokens)',
    );
  if (status === 403)
    return new GraftError(
      `the hub refused access to ${t.repo} (403): the token in HF_TOKEN is not allowed to read it`,
      'for a gated model, accept its licence on the model page with the account the token belongs to; otherwise use a token with read access',
    );
  if (status === 404 || status === 416) {
    if (errorCode === 'RevisionNotFound')
      return new GraftError(
        `no revision '${rev}' in ${t.repo} (404)`,
        'give a branch, tag or commit hash that exists: --revision or hf:ORG/NAME@REV',
      );
    if (errorCode === 'EntryNotFound' || (t.path && errorCode !== 'RepoNotFound'))
      return new GraftError(`no file '${t.path}' in ${t.repo} at revision ${rev} (404)`);
    return new GraftError(
      `no model repository '${t.repo}' on ${t.endpoint} (404)`,
      'check the id (ORG/NAME, as on the model page)',
    );
  }
  return new GraftError(
    `the hub answered ${status} for ${t.repo}${t.path ? `/${t.path}` : ''} at revision ${rev}`,
    'try again later',
  );
}
