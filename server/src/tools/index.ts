/**
 * The built-in tools. `defaultRegistry()` is what the daemon serves over `lens/listTools` /
 * `lens/runTool` and hands to the agent loop.
 */
import { gridTool } from './grid';
import { imageInfoTool } from './imageInfo';
import { ocrTool } from './ocr';
import { ToolRegistry } from './registry';
import { zoomTool } from './zoom';

export { ToolRegistry, errorResult, DEFAULT_TOOL_TIMEOUT_MS, type ToolDescription, type ToolRun } from './registry';
export type * from './types';
export { ocrTool, ocrImage, type OcrData } from './ocr';
export { imageInfoTool } from './imageInfo';
export { gridTool } from './grid';
export { zoomTool } from './zoom';

/** A fresh registry with ocr, zoom, image_info and grid. */
export const defaultRegistry = (): ToolRegistry => new ToolRegistry([ocrTool, zoomTool, imageInfoTool, gridTool]);
