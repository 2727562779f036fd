/**
 * "Download Model…": a repository from the daemon's catalogue (`lens/listCatalogue`) or any
 * `owner/name`, then a precision for catalogue entries with several, then `lens/downloadModel`
 * under a cancellable progress notification (the daemon's percentage and its line of bytes,
 * rate and ETA). On success "Load Now" makes it the model (`llavaLens.model`, as "Select Model…"
 * does); a failure is the daemon's message with its fix (errorAdvice.ts: Retry, Set HF_TOKEN…).
 *
 * The daemon downloads into its models folder (`LLAVA_LENS_MODELS_DIR`, else
 * `<cache>/models`), which its `lens/listModels` scans, so "Select Model…" lists what came down.
 * With a remote daemon (`llavaLens.remote.url`) nothing is sent: its operator downloads models.
 * The items and checks are pure, in downloadChoices.ts.
 */
import * as vscode from 'vscode';
import { LensErrorCode } from '../../common/errors';
import type { CatalogueEntry, DownloadModelParams, DownloadModelResult, ModelEntry } from '../../common/protocol';
import type { LensDaemon } from './daemon/lensDaemon';
import type { LensClient } from './daemonClient';
import {
  asDownloadRequest,
  catalogueItems,
  downloadedMessage,
  downloadedRepos,
  normaliseRepoInput,
  ProgressIncrements,
  repoIdProblem,
  variantItems,
} from './downloadChoices';
import { advice, adviceForDaemonError } from './errorAdvice';
import { useModelFolder } from './modelPicker';
import type { Notifier } from './notify';
import type { LensSettings } from './settings';

/**
 * VS Code passes an extension's progress reports on at most every 100 ms and drops the one still
 * pending when the task ends (ExtHostProgress: a throttled `$progressReport`, then `$progressEnd`
 * at once). The daemon's last reports (100 %, finishing) come within milliseconds of its answer,
 * so without a pause the notification stayed at "99% …" until it closed.
 */
const PROGRESS_FLUSH_MS = 150;

/** The Hub the daemon asks: it inherits this process's environment. */
const hubEndpoint = (): string => process.env.HF_ENDPOINT?.trim() || 'https://huggingface.co';

/**
 * The command. `request` (from a Retry / Resume button) skips the picks and downloads that again.
 * Never throws: every outcome ends in a message.
 */
export async function downloadModel(daemon: LensDaemon, settings: () => LensSettings, notify: Notifier, log: (line: string) => void, request?: unknown): Promise<void> {
  const remote = settings().remoteUrl || daemon.remoteUrl;
  if (remote) {
    void notify(advice.downloadOnRemote(remote));
    return;
  }
  let client: LensClient;
  try {
    client = await daemon.ensureStarted();
  } catch {
    return; // LensDaemon told the user why
  }
  const params = asDownloadRequest(request) ?? (await chooseDownload(client, log));
  if (!params) return;
  const result = await runDownload(client, params, notify, log);
  if (!result) return;
  const load = 'Load Now';
  const picked = await vscode.window.showInformationMessage(downloadedMessage(result), load);
  if (picked === load) await useModelFolder(result.path, daemon, settings);
}

/** The picks: catalogue entry or "Other repository…" (input box), then the precision. Undefined when dismissed. */
async function chooseDownload(client: LensClient, log: (line: string) => void): Promise<DownloadModelParams | undefined> {
  const [catalogue, models] = await Promise.all([
    client.listCatalogue().then(
      (r) => r.models,
      (e) => {
        log(`[download] the daemon did not list its catalogue: ${e instanceof Error ? e.message : String(e)}`);
        return [] as CatalogueEntry[];
      },
    ),
    client.listModels({}).then(
      (r) => r.models,
      () => [] as ModelEntry[],
    ),
  ]);
  const target = await vscode.window.showQuickPick(catalogueItems(catalogue, downloadedRepos(models, catalogue)), {
    title: 'LLaVA Lens: download a model from the Hugging Face Hub',
    placeHolder: 'Sizes and memory are approximate',
    matchOnDescription: true,
    matchOnDetail: true,
  });
  if (!target) return undefined;
  let entry: CatalogueEntry | undefined;
  if (target.value.kind === 'catalogue') {
    entry = target.value.entry;
  } else {
    const typed = await vscode.window.showInputBox({
      title: 'LLaVA Lens: download from a Hugging Face repository',
      prompt: 'owner/name (or its Hub address) of a repository in the ONNX layout LLaVA Lens reads: config.json, tokenizer, onnx/vision_encoder, embed_tokens and decoder_model_merged graphs',
      placeHolder: 'owner/name',
      ignoreFocusOut: true,
      validateInput: (v) => repoIdProblem(v),
    });
    if (typed === undefined) return undefined;
    const repo = normaliseRepoInput(typed);
    entry = catalogue.find((e) => e.repo.toLowerCase() === repo.toLowerCase());
    if (!entry) return { repo }; // the daemon picks the precision (select.ts)
  }
  if (entry.variants.length <= 1) return { repo: entry.repo, ...(entry.variants[0] ? { dtype: entry.variants[0].dtype } : {}) };
  const variant = await vscode.window.showQuickPick(variantItems(entry), {
    title: `LLaVA Lens: precision of ${entry.title}`,
    placeHolder: 'Smaller precisions download and use less, and answer a little worse',
    matchOnDescription: true,
  });
  return variant ? { repo: entry.repo, dtype: variant.value } : undefined;
}

/** `lens/downloadModel` under a cancellable notification; the result, or undefined after telling the user why not. */
async function runDownload(client: LensClient, params: DownloadModelParams, notify: Notifier, log: (line: string) => void): Promise<DownloadModelResult | undefined> {
  log(`[download] ${params.repo}${params.dtype !== undefined ? ` (${JSON.stringify(params.dtype)})` : ''}`);
  let cancelled = false;
  try {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `LLaVA Lens: downloading ${params.repo}`, cancellable: true },
      async (progress, token) => {
        const increments = new ProgressIncrements();
        token.onCancellationRequested(() => (cancelled = true));
        let lastReport = 0;
        const r = await client.downloadModel(params, {
          token,
          onProgress: (p) => {
            if (p.kind === 'end') return;
            lastReport = Date.now();
            progress.report({ increment: increments.next(p.percent), ...(p.message ? { message: p.message.trim() } : {}) });
          },
        });
        // Let the last report (100 %) reach the notification before it closes.
        const wait = lastReport + PROGRESS_FLUSH_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        return r;
      },
    );
    log(`[download] ${params.repo}@${result.commit} in ${result.path} (${result.downloadedBytes} bytes fetched)`);
    return result;
  } catch (e) {
    const code = (e as { code?: number }).code;
    const message = e instanceof Error ? e.message : String(e);
    if (code === LensErrorCode.Cancelled || (cancelled && code === undefined)) {
      void notify(advice.downloadCancelled(params));
    } else {
      void notify(adviceForDaemonError(code, message, { params, endpoint: hubEndpoint() }));
    }
    return undefined;
  }
}
