/**
 * `graft/data`: Datasets: stratified splits, image decoding and folders, IDX, pixel CSVs, text tables, augmentation, and the shifted domain pairs of the adaptation experiments.
 */
export { stratifiedSplit } from './splits.js';
export { imagesToTensor } from './image.js';
export { readIdx, readIdxDataset } from './idx.js';
export { listImageFolder } from './image-folder.js';
export { decodeImages } from './image.js';
export { loadLabelledImages, type LabelledImages } from './labelled-images.js';
export {
  readTextTable,
  loadSpamAssassin,
  subsetTable,
  type TextTable,
  type TextTableOptions,
} from './text-table.js';
export {
  augmentedPixels,
  viewsToTensor,
  cropBox,
  colourJitter,
  augmentKey,
  DEFAULT_AUGMENT,
  type AugmentOptions,
} from './augment.js';
export {
  fashionShiftPair,
  applyShift,
  parseShift,
  describeShift,
  DEFAULT_SHIFT,
  type Shift,
  type DomainPair,
  type ShiftPairOptions,
} from './shifts.js';
export { shiftImages, PIXEL_SHIFTS, type PixelShift } from './shifts.js';
