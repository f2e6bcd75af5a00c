/**
 * Studio's HTTP API as the page sees it (src/studio/API.md): the types it answers with and a small
 * fetch wrapper that turns an error answer into an Error carrying the server's message. A `?token=`
 * in the page's address is sent as a bearer token and appended to URLs that cannot carry headers.
 */

export type Kind = 'image' | 'text';
export interface ClassInfo {
  id: string;
  name: string;
  count: number;
}
export interface Project {
  id: string;
  name: string;
  kind: Kind;
  createdAt: string;
  updatedAt: string;
  classes: ClassInfo[];
  exampleCount: number;
  lastRunId: string | null;
}
export interface Example {
  id: string;
  classId: string;
  createdAt: string;
  imageUrl?: string;
  thumbUrl?: string;
  width?: number;
  height?: number;
  text?: string;
}
export type RunStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled' | 'interrupted';
export interface EpochMetric {
  epoch: number;
  loss: number;
  accuracy: number | null;
  valAccuracy: number | null;
}
export interface Evaluation {
  accuracy: number;
  classes: string[];
  perClass: { class: string; precision: number; recall: number; support: number }[];
  confusion: number[][];
  misclassified: {
    exampleId: string;
    trueClass: string;
    predictedClass: string;
    probability: number;
    thumbUrl?: string;
    text?: string;
  }[];
  heldOut: number;
  trained: number;
}
export interface RunSettings {
  epochs?: number;
  learningRate?: number;
  augment?: boolean;
  holdout?: number;
  batchSize?: number;
  topBlocks?: number;
  loraRank?: number;
  seed?: number;
}
export interface Run {
  id: string;
  projectId: string;
  status: RunStatus;
  backbone: string;
  method: string;
  settings: RunSettings;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  phase: string;
  fraction: number;
  etaSeconds: number | null;
  queuePosition: number | null;
  error: string | null;
  resumable: 'checkpoint' | 'restart' | null;
  metrics: EpochMetric[];
  evaluation: Evaluation | null;
  modelName: string | null;
}
export interface Backbone {
  id: string;
  label: string;
  kind: Kind;
  source: string;
  detail: string;
  methods: string[];
}
export interface SettingSpec {
  default: number | boolean;
  min?: number;
  max?: number;
}
export interface Method {
  id: string;
  label: string;
  description: string;
  default: boolean;
  settings: Partial<Record<keyof RunSettings, SettingSpec>>;
}
export interface Prediction {
  label: string;
  probabilities: Record<string, number>;
  top?: { label: string; probability: number }[];
}
export interface Explanation {
  label: string;
  probability: number;
  classIndex?: number;
  overlayUrl?: string;
  tokens?: { token: string; score: number }[];
}
export interface ImportResult {
  added: number;
  classesCreated: string[];
  skipped: { row?: number; file?: string; reason: string }[];
}

const token = new URLSearchParams(location.search).get('token');

/** A URL the browser fetches by itself (img src, EventSource, download links): the token as a query parameter. */
export function withToken(url: string): string {
  if (!token) return url;
  return url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** fetch() against the API: a JSON body (or FormData / Blob as they are), the JSON answer; an error answer throws ApiError. */
export async function api<T>(method: string, url: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers['authorization'] = `Bearer ${token}`;
  let payload: BodyInit | undefined;
  if (body instanceof FormData || body instanceof Blob) payload = body;
  else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  if (body instanceof Blob && body.type) headers['content-type'] = body.type;
  const res = await fetch(url, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const e = json as { message?: string; error?: string } | undefined;
    throw new ApiError(e?.message ?? (text.slice(0, 200) || `${res.status} ${res.statusText}`), res.status, e?.error);
  }
  return json as T;
}

/** The bytes of a URL (with the token), for the in-page model. */
export async function fetchBytes(url: string): Promise<ArrayBuffer> {
  const res = await fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  if (!res.ok) throw new ApiError(`${url}: ${res.status} ${res.statusText}`, res.status);
  return res.arrayBuffer();
}
