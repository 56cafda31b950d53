// The JavaScript surface of the native addon `sdxl_engine.node`, typed in one
// place (native/src/addon/addon.cpp registers it). Callers use the validated
// wrapper in ./index.ts, not these raw functions.

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;
export type Dtype = 'float32' | 'bfloat16' | 'float16';

export interface RuntimeOptions {
  device?: string; // "cpu" (default), "cuda" or "cuda:N"
  dtype?: string; // "float32" (default), "bfloat16" or "float16"
}

export interface LoadOptions extends RuntimeOptions {
  modelPath: string; // a diffusers folder (model_index.json) or one SGM .safetensors file
  configDir?: string; // for a single file: a diffusers folder whose configs to use
}

export interface LoraSpec {
  path: string; // kohya (SGM or diffusers names) or peft .safetensors
  scale?: number; // default 1
}

export interface GenerateOptions {
  prompt: string;
  negativePrompt?: string;
  width?: number; // default 1024, a multiple of 8
  height?: number; // default 1024, a multiple of 8
  steps?: number; // default 30
  guidanceScale?: number; // default 5
  seed?: number | bigint; // default 0
  loras?: LoraSpec[];
}

export interface VerifyOptions extends RuntimeOptions {
  modelPath: string;
  configDir?: string;
  goldenDir: string; // holds golden.json + golden.safetensors (+ lora/)
  outPath?: string; // when set, computed tensors are written here as .safetensors
}

export interface Progress {
  phase: string; // e.g. "loading", "denoising", "decoding", "verifying"
  step: number;
  total: number; // 0 when unknown
  message: string;
}
export type ProgressCallback = (progress: Progress) => void;

export interface BuildInfo {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
}

export interface ModelInfo {
  sourceLayout: 'diffusers' | 'sgm-single-file';
  unetParameters: number;
  vaeParameters: number;
  textEncoderParameters: number;
  textEncoder2Parameters: number;
  device: string;
  dtype: string;
}

export interface TokenIds {
  tokenizer: number[]; // 77 ids
  tokenizer2: number[]; // 77 ids
}

export interface HostTensor {
  shape: number[];
  data: Float32Array; // row-major
}

export interface PromptEmbeddings {
  promptEmbeds: HostTensor; // [1, 77, te1_hidden + te2_hidden]
  pooledPromptEmbeds: HostTensor; // [1, projection_dim]
}

export interface RgbImage {
  width: number;
  height: number;
  channels: 3;
  rgb: Buffer; // width * height * 3, row-major
}

export interface VerifyRow {
  name: string;
  maxAbsDiff: number;
  tolerance: number;
  pass: boolean;
}

export interface VerifyReport {
  rows: VerifyRow[];
  pass: boolean;
}

export interface SafetensorsTensorInfo {
  dtype: string; // as in the file: "F32", "F16", "BF16", ...
  shape: number[];
  dataOffsets: [number, number];
}

export interface SafetensorsHeader {
  tensors: Record<string, SafetensorsTensorInfo>;
  metadata: Record<string, string>;
}

// A job on its own native thread.
export interface NativeJob<T> {
  promise: Promise<T>;
  cancel(): void;
}

// Error codes the addon sets on `error.code`.
export type EngineErrorCode =
  | 'ERR_SDXL_CANCELLED'
  | 'ERR_SDXL_INVALID_ARGUMENT'
  | 'ERR_SDXL_DISPOSED'
  | 'ERR_SDXL_TORCH'
  | 'ERR_SDXL_ENGINE';

export interface NativeModel {
  describe(): ModelInfo;
  tokenize(prompt: string): Promise<TokenIds>;
  encodePrompt(prompt: string): Promise<PromptEmbeddings>;
  generate(options: GenerateOptions, onProgress?: ProgressCallback): NativeJob<RgbImage>;
  dispose(): void;
  readonly disposed: boolean;
}

export interface NativeAddon {
  buildInfo(): BuildInfo;
  loadModel(options: LoadOptions): Promise<NativeModel>;
  inspectSafetensors(path: string): Promise<SafetensorsHeader>;
  verify(options: VerifyOptions, onProgress?: ProgressCallback): NativeJob<VerifyReport>;
  Model: abstract new (...args: never[]) => NativeModel;
}
