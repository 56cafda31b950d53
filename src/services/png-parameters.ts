// The "parameters" text chunk AUTOMATIC1111 writes into its PNGs, so a generated image can
// be dropped into A1111's PNG Info, ComfyUI or Civitai and reproduced there:
//
//   <prompt> <lora:name:scale>
//   Negative prompt: <negative prompt>
//   Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 5, Seed: 42, Size: 1024x1024, Model: sdxl-base, Lora hashes: "name: 0123456789ab"
//
// with `Clip skip: N` after Model when the generation asked for one (A1111 itself writes it
// only when it is not 1; a reader takes its absence as 1, so 1 asked for is written too).
//
// The chunk is tEXt when the text is ASCII, else iTXt in UTF-8 (PIL, which A1111 uses, writes
// Latin-1 tEXt too, but readers such as libvips take tEXt bytes as UTF-8: ASCII reads the same in both).
import { crc32 } from 'node:zlib';
import type { GenerationParams, Sampler } from '../schemas/generations.js';

/** A1111's names of our samplers. */
export const A1111_SAMPLER_NAMES: Record<Sampler, string> = {
  euler: 'Euler',
  euler_a: 'Euler a',
  dpmpp_2m_karras: 'DPM++ 2M Karras',
};

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const IHDR_END = PNG_SIGNATURE.length + 4 + 4 + 13 + 4; // length, type, 13 data bytes, crc
export const PARAMETERS_KEYWORD = 'parameters';

/** A value in the comma-separated settings line; quoted (JSON-style) when it has a comma, colon or quote, as A1111 does. */
function settingValue(value: string): string {
  return /[,:"]/.test(value) ? JSON.stringify(value) : value;
}

/** A LoRA name as it appears inside <lora:...> and Lora hashes (no colons, commas or angle brackets). */
function loraName(name: string): string {
  return name.replace(/[:,<>"\n]/g, '_');
}

export interface ParametersInput {
  params: GenerationParams;
  /** The seed of this image (params.seed + its index). */
  seed: number;
  model: string;
  loras: Array<{ name: string; scale: number; autov3: string }>;
}

export function a1111Parameters({ params, seed, model, loras }: ParametersInput): string {
  const tags = loras.map((lora) => ` <lora:${loraName(lora.name)}:${lora.scale}>`).join('');
  const settings: Array<[string, string]> = [
    ['Steps', String(params.steps)],
    ['Sampler', A1111_SAMPLER_NAMES[params.sampler]],
    ['CFG scale', String(params.guidance_scale)],
    ['Seed', String(seed)],
    ['Size', `${params.width}x${params.height}`],
    ['Model', model],
  ];
  if (params.clip_skip !== undefined) settings.push(['Clip skip', String(params.clip_skip)]);
  if (loras.length > 0) {
    settings.push(['Lora hashes', loras.map((lora) => `${loraName(lora.name)}: ${lora.autov3.slice(0, 12)}`).join(', ')]);
  }
  const lines = [params.prompt.replace(/\n/g, ' ') + tags];
  if (params.negative_prompt !== '') lines.push(`Negative prompt: ${params.negative_prompt.replace(/\n/g, ' ')}`);
  lines.push(settings.map(([key, value]) => `${key}: ${settingValue(value)}`).join(', '));
  return lines.join('\n');
}

function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

const isAscii = (text: string) => /^[\u0000-\u007f]*$/.test(text);

/** The PNG with a text chunk `keyword` = `text` right after its header. */
export function withPngText(png: Buffer, keyword: string, text: string): Buffer {
  if (!png.subarray(0, PNG_SIGNATURE.length).equals(PNG_SIGNATURE) || png.toString('latin1', 12, 16) !== 'IHDR') {
    throw new TypeError('Expected a PNG starting with its IHDR chunk');
  }
  const textChunk = isAscii(text)
    ? chunk('tEXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]))
    // iTXt: keyword, NUL, compression flag 0, method 0, empty language tag NUL, empty translated keyword NUL, UTF-8 text.
    : chunk('iTXt', Buffer.concat([Buffer.from(keyword, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
  return Buffer.concat([png.subarray(0, IHDR_END), textChunk, png.subarray(IHDR_END)]);
}

/** The text chunks of a PNG (tEXt and uncompressed iTXt), keyword to text: what PNG Info tools read. */
export function readPngText(png: Buffer): Map<string, string> {
  const texts = new Map<string, string>();
  for (let offset = PNG_SIGNATURE.length; offset + 8 <= png.length;) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const data = png.subarray(offset + 8, offset + 8 + length);
    const nul = data.indexOf(0);
    if (type === 'tEXt' && nul > 0) texts.set(data.toString('latin1', 0, nul), data.toString('latin1', nul + 1));
    if (type === 'iTXt' && nul > 0 && data[nul + 1] === 0) {
      const language = data.indexOf(0, nul + 3);
      const translated = data.indexOf(0, language + 1);
      texts.set(data.toString('latin1', 0, nul), data.toString('utf8', translated + 1));
    }
    if (type === 'IEND') break;
    offset += 12 + length;
  }
  return texts;
}
