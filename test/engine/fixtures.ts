// Paths of the read-only reference fixtures the engine tests use.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixturesDir = process.env.SDXL_FIXTURES_DIR ?? path.resolve(repoRoot, '..', 'shared', 'fixtures');
export const tinyModelDir = path.join(fixturesDir, 'tiny-sdxl');
export const tinySingleFile = path.join(fixturesDir, 'tiny-sdxl-single-file', 'tiny_sdxl_sgm.safetensors');
export const goldenDir = path.join(fixturesDir, 'tiny-sdxl-golden');
export const kohyaLora = path.join(goldenDir, 'lora', 'tiny_lora_kohya.safetensors');
