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
  modelPath: string; // a diffusers folder (model_index.json) or one .safetensors checkpoint (SGM for SDXL, LDM for SD 1.x)
  configDir?: string; // for a single file: a diffusers folder whose configs to use
  loraCacheBytes?: number; // parsed LoRAs generate() keeps, least recently used leave first (default 1 GiB)
}

/** A diffusers folder of configs (and tokenizers) to fill with seeded random float32 weights. */
export interface RandomWeightsOptions {
  modelDir: string;
  seed?: number; // default 0; the same seed gives the same bytes on every machine
}

export interface LoraSpec {
  path: string; // kohya (SGM or diffusers names) or peft .safetensors
  scale?: number; // default 1
  sha256?: string; // the file's hash: its key in the model's LoRA cache (default: path, size and mtime)
}

export const SAMPLER_NAMES = ['euler', 'euler_a', 'dpmpp_2m_karras'] as const;
export type SamplerName = (typeof SAMPLER_NAMES)[number];

/** Image-quality metrics the engine computes (issue 25; native/src/metrics). */
export const METRIC_NAMES = ['clip_t', 'clip_i', 'hps', 'lpips', 'fid', 'kid', 'is'] as const;
export type MetricName = (typeof METRIC_NAMES)[number];
/** The networks behind them, each a folder under the metrics models folder (METRICS_MODELS_DIR). */
export const METRIC_NETWORK_NAMES = ['clip', 'hps', 'lpips', 'inception'] as const;
export type MetricNetworkName = (typeof METRIC_NETWORK_NAMES)[number];

/** Whether a metric's network is under the metrics models folder (metricNetworks: file checks only). */
export interface MetricNetwork {
  metric: MetricName;
  network: MetricNetworkName;
  available: boolean;
  reason: string | null; // why not, e.g. "no inception/model.safetensors under the metrics models folder"
}

/** One image to score, raw RGB; caption = its prompt (clip_t, hps). */
export interface EvaluateImage {
  name: string;
  width: number;
  height: number;
  rgb: Uint8Array; // width * height * 3, row-major
  caption?: string;
}

export interface EvaluateOptions {
  modelsDir: string; // the metrics models folder
  metrics: MetricName[];
  device?: string; // "cpu" (default), "cuda" or "cuda:N"
  seed?: number | bigint; // KID subsets and the Inception Score's permutation
  images: EvaluateImage[];
  references?: EvaluateImage[]; // clip_i, fid, kid: the real images (a dataset's)
}

/**
 * values: each computed metric, plus images, reference_images, kid_std, kid_subsets, kid_subset_size, is_std,
 * is_splits. A metric that could not be computed (weights missing or unreadable, too few images, no prompts) is in
 * unavailable with the reason, never an exception.
 */
export interface EvaluateResult {
  values: Record<string, number>;
  unavailable: Record<string, string>;
}

export interface GenerateOptions {
  prompt: string;
  negativePrompt?: string;
  width?: number; // default 1024, a multiple of 8
  height?: number; // default 1024, a multiple of 8
  steps?: number; // default 30
  guidanceScale?: number; // default 5
  sampler?: SamplerName; // default euler
  seed?: number | bigint; // default 0; image i uses seed + i
  numImages?: number; // 1 to 4, default 1
  // SDXL micro-conditioning (0 or absent: diffusers' defaults, the output size and no crop)
  originalWidth?: number;
  originalHeight?: number;
  cropTop?: number;
  cropLeft?: number;
  targetWidth?: number;
  targetHeight?: number;
  loras?: LoraSpec[]; // applied for this call only, unmerged
  // SD 1.x / 2.x only (AUTOMATIC1111's "Clip skip"): condition on final_layer_norm(hidden_states[-clipSkip]);
  // 1 (the default) is the last layer, 2 the penultimate. An SDXL model refuses any value but 0/absent.
  clipSkip?: number;
}

/** What conditions the UNet: sd1 (one CLIP ViT-L), sd2 (one OpenCLIP-H), sdxl (two encoders and size ids). */
export type ModelFamily = 'sd1' | 'sd2' | 'sdxl';
export type PredictionType = 'epsilon' | 'v_prediction';
export type SourceLayout = 'diffusers' | 'sgm-single-file' | 'ldm-single-file';

/** A model read from its configs and weight headers only (inspectModel): no weights are loaded. */
export interface ModelSummary {
  family: ModelFamily;
  predictionType: PredictionType;
  sourceLayout: SourceLayout;
  defaultResolution: number; // the UNet's sample_size times the VAE's scale: 512, 768, 1024
  textEncoderLayers: number; // layers of the (first) text encoder: the largest clipSkip
  unetParameters: number;
  vaeParameters: number;
  textEncoderParameters: number;
  textEncoder2Parameters: number; // 0 without a second text encoder (sd1, sd2)
}
/** A LoRA file checked against a model (Model#checkLora). */
export interface LoraCheck {
  layout: 'kohya-sgm' | 'kohya-diffusers' | 'peft';
  modules: number;
  components: string[]; // of unet, text_encoder, text_encoder_2 (SD 1.x/2.x files have no text_encoder_2)
  ranks: number[]; // distinct, ascending
  alphas: number[]; // distinct, ascending
  problems: string[]; // keys naming no module, modules whose shapes do not fit; [] = usable
}

export interface LoraCacheStats {
  entries: number;
  bytes: number;
  hits: number;
  misses: number;
}

export interface VerifyOptions extends RuntimeOptions {
  modelPath: string;
  configDir?: string;
  goldenDir: string; // holds golden.json + golden.safetensors (+ lora/)
  outPath?: string; // when set, computed tensors are written here as .safetensors
}

export interface Progress {
  phase: string; // e.g. "loading", "denoising", "decoding", "verifying"; training: "decoding" (in Node: sizes and keys),
  //                "loading", "caching", "training", "validating", "saving"
  step: number;
  total: number; // 0 when unknown
  message: string;
  // Training: loss, loss_avg, lr, it_per_s, images_per_s, eta_s, memory_bytes, peak_memory_bytes, ...;
  // {} when a report has none.
  metrics: Record<string, number>;
  files: string[]; // files written since the last report (e.g. validation PNGs); [] when none
}
export type ProgressCallback = (progress: Progress) => void;

export interface BuildInfo {
  torchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
}

export interface ModelInfo {
  family: ModelFamily;
  predictionType: PredictionType;
  sourceLayout: SourceLayout;
  unetParameters: number;
  vaeParameters: number;
  textEncoderParameters: number;
  textEncoder2Parameters: number; // 0 for sd1 and sd2
  device: string;
  dtype: string;
}

export interface TokenIds {
  tokenizer: number[]; // 77 ids
  tokenizer2: number[]; // 77 ids; [] for sd1 and sd2 (one tokenizer)
}

export interface HostTensor {
  shape: number[];
  data: Float32Array; // row-major
}

export interface PromptEmbeddings {
  promptEmbeds: HostTensor; // [1, 77, cross_attention_dim]: SDXL both penultimate states, SD 1.x/2.x the last one
  pooledPromptEmbeds: HostTensor; // [1, projection_dim] for SDXL; shape [0] and no data for sd1 and sd2
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

// One decoded training image as the addon takes it (src/engine/train.ts decodes with sharp).
export interface NativeTrainImage {
  name: string;
  caption: string;
  width: number; // its size as displayed: chooses its bucket
  height: number;
  rgb?: Uint8Array; // width * height * 3, row-major; absent: NativeTrainOptions.loadPixels gives them
  key?: string; // names its cached latents (engine.h TrainImage::key); absent: the hash of rgb
}

/** A training image decoded as the trainer takes it. */
export interface DecodedTrainImage extends NativeTrainImage {
  rgb: Uint8Array;
}

/** What NativeTrainOptions.loadPixels answers: an image decoded (maybe scaled down from its stated size). */
export interface LoadedPixels {
  width: number;
  height: number;
  rgb: Uint8Array;
}

// engine.h's TrainOptions in camelCase; every field but modelPath, images and
// outputDir falls back to the C++ default. train.ts fills them all from TrainConfig.
export interface NativeTrainOptions extends RuntimeOptions {
  modelPath: string;
  configDir?: string;
  images: NativeTrainImage[];
  classImages: NativeTrainImage[]; // prior preservation; [] = off
  validationImages: NativeTrainImage[]; // held out: the validation loss is over them; [] = none
  /** Images given without rgb: their pixels, called from the trainer's thread when it must encode one (index over images, classImages, validationImages). */
  loadPixels?: (index: number) => Promise<LoadedPixels>;
  cacheDir?: string; // latents and prompt embeddings (engine.h TrainOptions::cache_dir); absent: <outputDir>/cache
  outputDir: string;
  outputName?: string;
  resumeFrom?: string;
  triggerPhrase?: string;
  resolution?: number;
  minResolution?: number;
  bucketStep?: number;
  minBucketSide?: number;
  maxBucketSide?: number;
  randomFlip?: boolean;
  repeats?: number;
  captionDropout?: number;
  method?: string; // "lora" (default) or "full": every weight of the UNet (and of the text encoders with trainTextEncoder)
  rank?: number; // method "lora" only, as alpha, dropout and the targets
  alpha?: number;
  dropout?: number;
  unetTargets?: string[];
  trainTextEncoder?: boolean;
  textEncoderTargets?: string[];
  clipSkip?: number; // SD 1.x/2.x only; 0 or 1 = last layer
  textEncoder2Lr?: number; // SDXL only; 0 = textEncoderLr
  maxSteps?: number;
  batchSize?: number;
  gradientAccumulation?: number;
  maxGradNorm?: number;
  lrScheduler?: string;
  lrWarmupSteps?: number;
  unetLr?: number;
  textEncoderLr?: number;
  minSnrGamma?: number;
  noiseOffset?: number;
  seed?: number | bigint;
  optimizer?: string;
  adamBeta1?: number;
  adamBeta2?: number;
  adamEpsilon?: number;
  weightDecay?: number;
  vaeDtype?: string;
  gradientCheckpointing?: boolean;
  initialLossScale?: number;
  fullBf16?: boolean; // method "full": bfloat16 weights and updates, no float32 master copies (dtype bfloat16)
  emaDecay?: number; // method "full": 0 = off
  emaStartStep?: number;
  emaOnCpu?: boolean;
  validationWeights?: string; // "trained" or "ema"
  /** Data parallel: one rank per device ("cpu", "cuda:N"; the CPU may be named several times), each taking batchSize / devices.length images of every batch. */
  devices?: string[];
  collectiveTimeoutMs?: number; // a rank waiting longer for the others fails the run
  /** Several devices: 0 = whole optimizer states on every rank; 1 = each rank keeps its shard of them (ZeRO-1); 2 = and of the gradients (ZeRO-2). */
  zeroStage?: number;
  checkpointEvery?: number;
  keepCheckpoints?: number; // > 0: only the newest this many checkpoints stay on disk
  stopAfterStep?: number;
  validationEvery?: number;
  validationPrompts?: string[];
  validationSeed?: number | bigint;
  validationSteps?: number;
  validationGuidanceScale?: number;
  validationLossSamples?: number;
  /** Metrics of the validation images: at each validation the per-image ones (clip_t, clip_i, hps), at the end all of them on the final set. */
  validationMetrics?: string[];
  validationFinalImages?: number; // images per validation prompt sampled with the final weights and scored; 0 = none
  metricsModelsDir?: string; // the metrics models folder; '' = no metric available
  savePeft?: boolean;
  saveDtype?: string;
  metadata?: Record<string, string>;
}

interface TrainResultCommon {
  steps: number; // optimizer steps done
  peftPath?: string; // when savePeft
  checkpointPath?: string; // the last checkpoint written, if any
  samplePaths: string[]; // validation PNGs
  metrics: Record<string, number>; // final_loss, mean_loss, validation_loss_first/last, skipped_steps, ...
}

// A finished run has its LoRA file (method "lora") or its model files (method "full"); a
// cancelled one (cancel() or stopAfterStep) has the checkpoint to resume from.
export type TrainResult =
  | (TrainResultCommon & {
    status: 'completed';
    loraPath?: string; // method "lora": <outputDir>/<outputName>.safetensors, kohya's layout
    // Method "full":
    modelDir?: string; // <outputDir>/<outputName>/: a diffusers folder, trained components written and the others
    //                    symlinks to the base folder's; absent when the base model is a single file
    modelPath?: string; // <outputDir>/<outputName>.safetensors: the family's official single file (SGM for SDXL,
    //                     LDM for SD 1.x); absent for SD 2.x
    emaModelPath?: string; // with EMA: <outputDir>/<outputName>_ema.safetensors
  })
  | (TrainResultCommon & { status: 'cancelled'; loraPath?: undefined; modelDir?: undefined; modelPath?: undefined; emaModelPath?: undefined; checkpointPath: string });

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
  generate(options: GenerateOptions, onProgress?: ProgressCallback): NativeJob<RgbImage[]>;
  checkLora(path: string): Promise<LoraCheck>;
  loraCacheStats(): LoraCacheStats;
  dispose(): void;
  readonly disposed: boolean;
}

/** Device memory: the CUDA caching allocator's bytes in use and peak on cuda[:N]; the resident set and its high-water mark on cpu. */
export interface MemoryStats {
  inUseBytes: number;
  peakBytes: number;
}

export interface NativeAddon {
  buildInfo(): BuildInfo;
  memoryStats(device: string): MemoryStats;
  loadModel(options: LoadOptions): Promise<NativeModel>;
  inspectSafetensors(path: string): Promise<SafetensorsHeader>;
  inspectModel(options: { modelPath: string; configDir?: string }): Promise<ModelSummary>;
  writeRandomWeights(options: RandomWeightsOptions): Promise<void>;
  verify(options: VerifyOptions, onProgress?: ProgressCallback): NativeJob<VerifyReport>;
  train(options: NativeTrainOptions, onProgress?: ProgressCallback): NativeJob<TrainResult>;
  batchesPerEpoch(plan: { images: Array<{ width: number; height: number }>; resolution: number; minResolution?: number; bucketStep: number; minBucketSide: number; maxBucketSide: number; repeats: number; batchSize: number }): number;
  metricNetworks(modelsDir: string): MetricNetwork[];
  evaluate(options: EvaluateOptions, onProgress?: ProgressCallback): NativeJob<EvaluateResult>;
  Model: abstract new (...args: never[]) => NativeModel;
}
