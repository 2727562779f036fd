/**
 * Models from the Hugging Face Hub: the catalogue, the Hub API client and `pullModel`.
 * See docs/models.md. The daemon's `lens/downloadModel` and `llava-lens pull` sit on `pullModel`.
 */
export { CATALOGUE, dtypeFlag, findCatalogueEntry, formatCatalogue, type CatalogueEntry, type CatalogueVariant } from './catalogue';
export { HubErrorCode } from './errors';
export { listRepoFiles, resolveUrl, type HubClient, type HubFile, type RepoListing } from './hubApi';
export { formatProgressLine, type PullPhase, type PullProgress } from './progress';
export { proxyFromEnv, type ProxySettings } from './proxy';
export { MANIFEST, pullModel, type PullOptions, type PullResult } from './pull';
export { availableDtypes, selectFiles } from './select';
export { defaultModelsDir, hubEndpoint, hubToken, modelFolderFor } from './settings';
