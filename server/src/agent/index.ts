/** The agent loop and the palette skills built on it. */
export { runAgent, DEFAULT_MAX_STEPS } from './loop';
export { parseActions, type Action, type ActionForm, type ParsedReply } from './actions';
export { toolSystemPrompt, observationTurn, type Observation } from './prompts';
export { linesToText } from '../tools/ocr';
export { extractText, explainWithOcr, ocrContext, type ExplainKind, type ExtractedText } from './skills';
export type * from './types';
