// Paths of the read-only SD 1.x / SD 2.x reference fixtures (../shared/fixtures/README-sd1.md).
import path from 'node:path';
import { fixturesDir } from '../engine/fixtures.js';

export const tinySd15Dir = path.join(fixturesDir, 'tiny-sd15');
export const tinySd15SingleFile = path.join(fixturesDir, 'tiny-sd15-single-file', 'tiny_sd15.safetensors');
export const tinySd2vDir = path.join(fixturesDir, 'tiny-sd2v');
/** A rank-4 SD 1.x LoRA on every UNet attention and text-encoder projection, kohya's SD1 names. */
export const sd15KohyaLora = path.join(fixturesDir, 'tiny-sd15-golden', 'lora', 'tiny_lora_kohya.safetensors');
export const sd15PeftLora = path.join(fixturesDir, 'tiny-sd15-golden', 'lora', 'tiny_lora_peft.safetensors');
/** Full-size SD 1.5's state-dict keys and shapes ({ keys: { name: shape } }), without weights. */
export const sd15BaseKeysDir = path.join(fixturesDir, 'sd15-base-keys');
