// Base model: a Stable Diffusion pipeline (SD 1.x, SD 2.x or SDXL) this server can train
// on and sample from, as the engine's inspectModel reads it: the server's (the built-in
// demos and MODELS_DIR), or a tenant's own (trained by one of its full fine-tuning runs).
import { Type, type Static } from 'typebox';
import { ResourceId, Timestamp } from './common.js';
import { ModelFamilySchema } from './model-families.js';

/** The id prefix of a tenant's models (mdl_01JD...); MODELS_DIR entries so named are left out. */
export const TENANT_MODEL_ID_PREFIX = 'mdl';
export const TenantModelId = ResourceId(TENANT_MODEL_ID_PREFIX, "A tenant's model id");

const ParameterCount = (what: string) => Type.Integer({ minimum: 0, description: `Parameters of ${what}` });

export const MODEL_COMPONENTS = ['unet', 'vae', 'text_encoder', 'text_encoder_2'] as const;
export type ModelComponent = (typeof MODEL_COMPONENTS)[number];

export const BaseModelSchema = Type.Object(
  {
    id: Type.String({
      description: "The folder or file name under MODELS_DIR, a built-in demo model (sdxl-tiny-demo, sd15-tiny-demo), or a tenant's model (mdl_...)",
      examples: ['sdxl-tiny-demo', 'stable-diffusion-xl-base-1.0', 'sd_xl_base_1.0.safetensors', 'v1-5-pruned-emaonly.safetensors', 'mdl_01JD3Q5V8Z6ZK2W7M4N1T0X9PA'],
    }),
    owner: Type.Enum(['server', 'tenant'], {
      description: "server: a built-in demo or a MODELS_DIR model, every tenant's, read-only; tenant: yours, trained by a full " +
        'fine-tuning run (params.method full); only you see it, and DELETE removes it',
    }),
    name: Type.Union([Type.String(), Type.Null()], { description: "A tenant model's name: its training run's; null for the server's" }),
    base_model: Type.Union([Type.String(), Type.Null()], { description: 'The model a tenant model was fine-tuned from; null for the server\'s' }),
    training_run_id: Type.Union([Type.String(), Type.Null()], { description: 'The full fine-tuning run that trained a tenant model; null for the server\'s' }),
    byte_size: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
      description: "A tenant model's stored bytes, counted against TENANT_MAX_MODEL_BYTES: its single file, EMA file and the " +
        "diffusers folder's own files (not the base model's components the folder links to); null for the server's",
    }),
    created_at: Type.Union([Timestamp, Type.Null()], { description: 'When a tenant model was registered; null for the server\'s' }),
    family: ModelFamilySchema,
    prediction_type: Type.Enum(['epsilon', 'v_prediction'], {
      description: 'What the UNet predicts: the noise (epsilon), or v (SD 2.x 768 models); from the scheduler config',
    }),
    source_layout: Type.Enum(['diffusers', 'single_file'], {
      description: 'diffusers: a folder with model_index.json; single_file: one checkpoint (.safetensors, SGM for SDXL, LDM for SD 1.x)',
    }),
    description: Type.String(),
    demo: Type.Boolean({ description: 'A built-in demo model: random weights, tiny, makes noise' }),
    default_resolution: Type.Integer({
      minimum: 64,
      description: 'Side, in pixels, of the images the model was made for: 512 (SD 1.x), 768 (SD 2.x v-prediction), 1024 (SDXL), 128 (the demos)',
    }),
    components: Type.Array(Type.Enum([...MODEL_COMPONENTS]), {
      description: 'The components it has: unet, vae, text_encoder, and text_encoder_2 for SDXL',
    }),
    parameters: Type.Object(
      {
        unet: ParameterCount('the UNet'),
        vae: ParameterCount('the VAE'),
        text_encoder: ParameterCount('the (first) CLIP text encoder'),
        text_encoder_2: Type.Optional(ParameterCount("SDXL's second (projected) CLIP text encoder")),
        total: ParameterCount('every component'),
      },
      { additionalProperties: false, description: 'Parameters of each component it has, and their total' },
    ),
    clip_skip_max: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
      description: "SD 1.x/2.x: the text encoder's layer count, the largest clip_skip a run or generation may ask for; null for SDXL",
    }),
  },
  { $id: 'BaseModel', additionalProperties: false },
);
export type BaseModel = Static<typeof BaseModelSchema>;

export const BaseModelRef = Type.Ref('BaseModel');

export const BaseModelList = Type.Object(
  { data: Type.Array(BaseModelRef, { description: "The demo models first (sdxl-tiny-demo, sd15-tiny-demo), then MODELS_DIR by id, then the tenant's own, newest first" }) },
  { additionalProperties: false },
);

export const BaseModelParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 255, description: 'Model id' }) },
  { additionalProperties: false },
);
