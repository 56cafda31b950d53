// Where this process trains and generates: TRAIN_DEVICE, else the GPU when the engine sees one.
import { buildInfo } from '../engine/index.js';

/** TRAIN_DEVICE, else cuda when the engine sees a GPU, else cpu (also when the engine is not built). */
export function trainingDevice(configured: string | undefined): string {
  if (configured !== undefined) return configured;
  try {
    return buildInfo().cudaAvailable ? 'cuda' : 'cpu';
  } catch {
    return 'cpu';
  }
}
