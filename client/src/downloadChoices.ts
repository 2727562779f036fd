/**
 * "Download Model…" as data (no 'vscode' import): the quick pick items built from the daemon's
 * catalogue (`lens/listCatalogue`), the precision items of a catalogue entry, the check of a
 * typed repository id, the notification's progress arithmetic and the closing message.
 * `modelDownload.ts` shows them; `modelPicker.ts` uses the model-list helpers.
 */
import { checkDownloadModelParams, type CatalogueEntry, type DownloadModelParams, type DownloadModelResult, type DtypeSpec, type ModelEntry } from '../../common/protocol';
import { dtypeFlag } from '../../server/src/hub/catalogue';
import { formatBytes } from '../../server/src/hub/progress';

type CatalogueVariant = CatalogueEntry['variants'][number];

/** Fewer installed models than this and "Select Model…" offers "Download Model…" too. */
export const FEW_MODELS = 3;

/** 870 -> "870 MB", 1410 -> "1.4 GB": no more digits than an estimate has. */
export function approxSize(mb: number): string {
  return mb < 1000 ? `${Math.round(mb / 10) * 10} MB` : `${(mb / 1000).toFixed(1)} GB`;
}

/** "~1.4 GB download · ~2.1 GB memory" (+ the variant's note). */
export function variantSizes(v: CatalogueVariant): string {
  return `~${approxSize(v.approxDownloadMB)} download · ~${approxSize(v.approxMemoryMB)} memory${v.note ? ` (${v.note})` : ''}`;
}

/** What the first quick pick's items stand for. */
export type DownloadTarget = { kind: 'catalogue'; entry: CatalogueEntry } | { kind: 'other' };

export interface PickItem<T> {
  label: string;
  description?: string;
  detail?: string;
  value: T;
}

/**
 * The first pick: one item per catalogue entry (title, repository, the default variant's label
 * and sizes, how many precisions there are), `$(check)` on those already downloaded, then
 * "Other repository…".
 */
export function catalogueItems(entries: readonly CatalogueEntry[], downloaded: ReadonlySet<string> = new Set()): Array<PickItem<DownloadTarget>> {
  const items: Array<PickItem<DownloadTarget>> = [];
  for (const entry of entries) {
    const first = entry.variants[0];
    if (!first) continue;
    const more = entry.variants.length > 1 ? ` · ${entry.variants.length} precisions` : '';
    const have = downloaded.has(entry.repo.toLowerCase());
    items.push({
      label: `${have ? '$(check)' : '$(cloud-download)'} ${entry.title}`,
      description: have ? `${entry.repo} · downloaded` : entry.repo,
      detail: `${first.label}: ${variantSizes(first)}${more}`,
      value: { kind: 'catalogue', entry },
    });
  }
  items.push({
    label: '$(edit) Other repository…',
    description: 'owner/name',
    detail: 'Any Hugging Face repository in the ONNX layout LLaVA Lens reads (config.json, tokenizer, onnx/ graphs)',
    value: { kind: 'other' },
  });
  return items;
}

/** The precision pick of an entry: one item per variant, the first marked default. */
export function variantItems(entry: CatalogueEntry): Array<PickItem<DtypeSpec>> {
  return entry.variants.map((v, i) => ({
    label: v.label,
    description: `${i === 0 ? 'default · ' : ''}${dtypeFlag(v.dtype)}`,
    detail: variantSizes(v),
    value: v.dtype,
  }));
}

/**
 * `owner/name` from what the user typed: the id itself, or a Hub page URL
 * (`https://huggingface.co/owner/name/tree/main` → `owner/name`, on a mirror as well).
 */
export function normaliseRepoInput(text: string): string {
  const t = text.trim();
  const url = /^https?:\/\/[^/]+\/([^/?#]+)\/([^/?#]+)/i.exec(t);
  return url ? `${url[1]}/${url[2]}` : t.replace(/^\/+|\/+$/g, '');
}

/**
 * Why `text` is not a repository id (after `normaliseRepoInput`), or undefined when it is one.
 * The Hub's rules: `owner/name`, letters, digits, `-`, `_` and `.`; neither part starts or ends
 * with `-` or `.`, none has `--` or `..`; the name at most 96 characters.
 */
export function repoIdProblem(text: string): string | undefined {
  const id = normaliseRepoInput(text);
  if (id === '') return 'Type a repository id: owner/name (as in its Hub address).';
  const parts = id.split('/');
  if (parts.length !== 2 || parts.some((p) => p === '')) return `"${id}" is not owner/name: one slash between the owner and the name.`;
  for (const p of parts) {
    if (!/^[A-Za-z0-9_.-]+$/.test(p)) return `"${p}" may only have letters, digits, "-", "_" and ".".`;
    if (/^[-.]|[-.]$/.test(p)) return `"${p}" may not start or end with "-" or ".".`;
    if (p.includes('--') || p.includes('..')) return `"${p}" may not contain "--" or "..".`;
  }
  if (parts[1].length > 96) return `The name is ${parts[1].length} characters long; the Hub allows 96.`;
  return undefined;
}

/**
 * Repositories of `entries` that have a folder among `models` (downloads land in
 * `<models folder>/owner/name`), lower-cased.
 */
export function downloadedRepos(models: readonly ModelEntry[], entries: readonly CatalogueEntry[]): Set<string> {
  const tails = new Set(models.map((m) => m.path.split(/[\\/]+/).filter(Boolean).slice(-2).join('/').toLowerCase()));
  return new Set(entries.map((e) => e.repo.toLowerCase()).filter((r) => tails.has(r)));
}

/** Merges model lists (first occurrence wins), leaving out the folders in `hide` (the embedded test model). */
export function mergeModelLists(lists: ReadonlyArray<readonly ModelEntry[]>, hide: readonly string[] = []): ModelEntry[] {
  const seen = new Set(hide);
  const out: ModelEntry[] = [];
  for (const list of lists) {
    for (const m of list) {
      if (seen.has(m.path)) continue;
      seen.add(m.path);
      out.push(m);
    }
  }
  return out;
}

/**
 * Turns the daemon's percentages into the increments `vscode.Progress.report` wants: never
 * negative, never past 100 in total; an event without a percentage adds nothing.
 */
export class ProgressIncrements {
  private shown = 0;

  next(percent: number | undefined): number {
    if (percent === undefined || !Number.isFinite(percent)) return 0;
    const target = Math.min(100, Math.max(0, percent));
    const inc = Math.max(0, target - this.shown);
    this.shown += inc;
    return inc;
  }
}

/** The message after a download: where it is and what came over the network. */
export function downloadedMessage(r: DownloadModelResult): string {
  const fetched = r.downloadedBytes === 0 ? 'all files were already there and verified' : `${formatBytes(r.downloadedBytes)} fetched`;
  return `LLaVA Lens: ${r.repo} (${formatBytes(r.bytes)}, commit ${r.commit.slice(0, 7)}) is in ${r.path}; ${fetched}.`;
}

/**
 * A command argument as a download request (the Retry / Resume buttons pass one): its repo,
 * dtype and revision, or undefined when it is not a valid request.
 */
export function asDownloadRequest(v: unknown): DownloadModelParams | undefined {
  if (checkDownloadModelParams(v) !== undefined) return undefined;
  const { repo, dtype, revision } = v as DownloadModelParams;
  if (repoIdProblem(repo) !== undefined) return undefined;
  return { repo, ...(dtype !== undefined ? { dtype } : {}), ...(revision !== undefined ? { revision } : {}) };
}
